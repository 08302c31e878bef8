"""MatmulGradConv2d against nn.Conv2d and autograd: same outputs and gradients, stock path where it does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.layers import MatmulGradConv2d
from cnnlab.layers.matmul_grad import im2col3x3


def _pair(cin: int, cout: int, bias: bool) -> tuple[MatmulGradConv2d, nn.Conv2d]:
    torch.manual_seed(0)
    fast = MatmulGradConv2d(cin, cout, 3, padding=1, bias=bias)
    ref = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _count_applies(monkeypatch: pytest.MonkeyPatch, function: str) -> list[int]:
    """A list that grows by one each time ``cnnlab.layers.matmul_grad.<function>.apply`` runs."""
    from cnnlab.layers import matmul_grad

    calls: list[int] = []
    cls = getattr(matmul_grad, function)
    original = cls.apply
    monkeypatch.setattr(cls, "apply", lambda *a: calls.append(1) or original(*a))
    return calls


def _grads(conv: nn.Module, x: torch.Tensor, g: torch.Tensor, autocast: bool) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = conv(x)
    out.float().backward(g)
    grads = [out.detach().float(), x.grad, *(p.grad for p in conv.parameters())]
    for p in conv.parameters():
        p.grad = None
    return grads


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_and_gradients_match_nn_conv2d_fp32(size: int, bias: bool, channels_last: bool) -> None:
    fast, ref = _pair(5, 7, bias)
    x = torch.randn(3, 5, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        fast, ref = fast.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
    g = torch.randn(3, 7, size, size)
    for a, b in zip(_grads(fast, x, g, False), _grads(ref, x, g, False), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_gradients_match_under_bf16_autocast() -> None:
    fast, ref = _pair(64, 32, True)
    fast, ref = fast.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
    x = torch.randn(16, 64, 3, 3).contiguous(memory_format=torch.channels_last)
    g = torch.randn(16, 32, 3, 3)
    got, want = _grads(fast, x, g, True), _grads(ref, x, g, True)
    assert got[1].dtype == want[1].dtype == torch.float32  # input and parameter grads in the master dtype
    for a, b in zip(got, want, strict=True):
        # Both round to bf16 (8 significant bits) but sum in a different order, and a CPU without native
        # bf16 (AVX2 only) rounds partial sums too: allow a few bf16 steps of the largest entry.
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.02 * float(b.abs().max()))


def test_bf16_autocast_leaves_a_float64_model_in_float64_like_nn_conv2d() -> None:
    """Autocast never casts float64; the matmul path cast it to bf16 (train mode only, so train != eval)."""
    fast, ref = _pair(2, 3, True)
    fast, ref = fast.double(), ref.double()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, want = fast.train()(x), ref.train()(x)
        assert fast.eval()(x).dtype == torch.float64
    assert out.dtype == want.dtype == torch.float64
    g = torch.randn_like(want)
    got_grads = torch.autograd.grad(out, (x, fast.weight, fast.bias), g)
    want_grads = torch.autograd.grad(want, (x, ref.weight, ref.bias), g)
    torch.testing.assert_close(out, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b)


def test_im2col_columns_follow_the_permuted_weight_order() -> None:
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).view(1, 2, 3, 3)
    cols = im2col3x3(x)  # (9 pixels, 9 offsets x 2 channels)
    assert cols.shape == (9, 18)
    centre = cols[4].view(3, 3, 2)  # the middle pixel sees the whole image
    torch.testing.assert_close(centre.permute(2, 0, 1), x[0])
    assert cols[0, :2].tolist() == [0.0, 0.0]  # top-left pixel, offset (-1, -1): padding


def test_the_stock_path_runs_where_the_matmul_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_applies(monkeypatch, "_MatmulGradConv")
    conv = MatmulGradConv2d(4, 4, 3, padding=1)
    conv(torch.randn(2, 4, 3, 3))
    assert calls == [1]  # tiny map, grad on: the matmul gradient
    conv(torch.randn(2, 4, 7, 7))  # 49 pixels > max_pixels: oneDNN is faster there
    with torch.no_grad():
        conv(torch.randn(2, 4, 3, 3))  # inference: nothing to differentiate
    conv.eval()(torch.randn(2, 4, 3, 3))  # eval mode (evaluation, export, analysis)
    conv.train()
    MatmulGradConv2d(4, 4, 3, padding=1, stride=2)(torch.randn(2, 4, 4, 4))  # not 3x3/stride 1/padding 1
    conv.weight.requires_grad_(False)
    conv(torch.randn(2, 4, 3, 3))  # frozen weight (e.g. --freeze features)
    assert calls == [1]


def test_fx_and_onnx_see_a_plain_convolution(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conv = MatmulGradConv2d(4, 8, 3, padding=1)
    traced = torch.fx.symbolic_trace(conv)  # in training mode: the check must not touch a Proxy
    assert any(n.op == "call_function" and "conv2d" in str(n.target) for n in traced.graph.nodes)
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv.eval(), (torch.randn(1, 4, 3, 3),), dynamo=True).save(str(path))
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Conv"]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_one_channel_fp32_forward_is_a_matmul_and_matches_nn_conv2d(bias: bool, channels_last: bool) -> None:
    """One input channel (FastNet's stem on grey images): ``im2col @ w``; oneDNN runs it 3x slower on AVX2."""
    fast, ref = _pair(1, 16, bias)
    x = torch.randn(4, 1, 9, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn(4, 16, 9, 7)
    got, want = _grads(fast, x, g, False), _grads(ref, x, g, False)
    assert got[0].is_contiguous(memory_format=torch.channels_last)  # the matmul's (B*H*W, C_out) layout
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # evaluation and a frozen stem: the same values, no graph
        torch.testing.assert_close(fast.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5)


def test_one_channel_matmul_forward_only_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_applies(monkeypatch, "_MatmulConv1")
    conv = MatmulGradConv2d(1, 8, 3, padding=1)
    conv(torch.randn(2, 1, 8, 8))
    assert calls == [1]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16: oneDNN's own kernels (AMX, AVX-512 BF16)
        assert conv(torch.randn(2, 1, 8, 8)).dtype == torch.bfloat16
    conv.double()(torch.randn(2, 1, 8, 8, dtype=torch.float64))
    MatmulGradConv2d(3, 8, 3, padding=1)(torch.randn(2, 3, 8, 8))  # three channels: oneDNN is faster
    MatmulGradConv2d(1, 8, 3, padding=1, stride=2)(torch.randn(2, 1, 8, 8))
    traced = torch.fx.symbolic_trace(MatmulGradConv2d(1, 8, 3, padding=1))
    assert any(n.op == "call_function" and "conv2d" in str(n.target) for n in traced.graph.nodes)
    assert calls == [1]


def _pooled_pair(bias: bool) -> tuple[nn.Sequential, nn.Sequential]:
    torch.manual_seed(0)
    fast = nn.Sequential(MatmulGradConv2d(5, 7, 3, padding=1, bias=bias, pooled=True), nn.MaxPool2d(2))
    ref = nn.Sequential(nn.Conv2d(5, 7, 3, padding=1, bias=bias), nn.MaxPool2d(2))
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("hw", [(7, 7), (7, 8), (8, 7), (5, 9), (8, 8), (9, 9)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pooled_conv_skips_what_the_pool_drops_and_matches_conv_then_pool(
    hw: tuple[int, int], bias: bool, channels_last: bool
) -> None:
    """``pooled=True``: conv -> 2x2 floor pool gives the same values and gradients as nn.Conv2d -> pool."""
    fast, ref = _pooled_pair(bias)
    h, w = hw
    x = torch.randn(3, 5, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        fast, ref = fast.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
    assert fast[0](x).shape[-2:] == (h - h % 2, w - w % 2)  # training: the dropped row/column is not computed
    g = torch.randn(3, 7, h // 2, w // 2)
    for a, b in zip(_grads(fast, x, g, False), _grads(ref, x, g, False), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(_grads(fast, x, g, True), _grads(ref, x, g, True), strict=True):  # bf16 autocast
        torch.testing.assert_close(a.float(), b.float(), rtol=0.02, atol=0.02 * float(b.abs().max()))


def test_pooled_conv_keeps_its_full_output_in_eval_tracing_and_without_pooled() -> None:
    conv = MatmulGradConv2d(4, 8, 3, padding=1, pooled=True)
    x = torch.randn(2, 4, 7, 7)
    assert conv(x).shape[-2:] == (6, 6)
    with torch.no_grad():
        assert conv(x).shape[-2:] == (6, 6)  # training-mode inference (e.g. the train loss) skips them too
    assert conv.eval()(x).shape[-2:] == (7, 7)  # evaluation, analysis, hooks: the layer's real output
    conv.train()
    assert MatmulGradConv2d(4, 8, 3, padding=1)(x).shape[-2:] == (7, 7)  # not declared pooled
    assert MatmulGradConv2d(4, 8, 3, padding=1, stride=2, pooled=True)(x).shape[-2:] == (4, 4)
    traced = torch.fx.symbolic_trace(conv)  # in training mode: the check must not touch a Proxy
    assert traced(x).shape[-2:] == (7, 7)
    assert "pooled=True" in repr(conv)


def test_fastnet_trains_identically_with_and_without_the_pool_crop() -> None:
    """FastNet's 64 -> 128 convolution on 7x7 maps is pooled: a training step gives the same loss and gradients."""
    from cnnlab.models.fastnet import FastNet

    torch.manual_seed(0)
    net = FastNet(widths=(8, 16, 16, 32))
    pooled = [m for m in net.modules() if isinstance(m, MatmulGradConv2d) and m.pooled]
    assert len(pooled) == 3  # stem, stage 1, stage 2 (the last stage has no pool)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    results = []
    for flag in (True, False):
        for m in pooled:
            m.pooled = flag
        net.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        results.append([loss.detach(), *(p.grad.clone() for p in net.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
