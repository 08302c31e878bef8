"""ResizeConv2d, GatedConv2d and ConvBNAct against their definitions written with torch.nn.functional."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.layers import ConvBNAct, GatedConv2d, ResizeConv2d


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("k", [3, 4])
def test_resize_conv_is_interpolate_then_same_conv(mode: str, k: int) -> None:
    torch.manual_seed(0)
    layer = ResizeConv2d(3, 5, k, scale_factor=2, mode=mode)
    x = torch.randn(2, 3, 5, 7)
    up = F.interpolate(x, scale_factor=2, mode=mode, align_corners=False if mode == "bilinear" else None)
    conv = layer.conv
    # stride-1 'same' (TensorFlow / torch rule): d(k-1) total, the odd pixel on the right/bottom
    left, right = (k - 1) // 2, k // 2
    expected = F.conv2d(F.pad(up, (left, right, left, right)), conv.weight, conv.bias)
    out = layer(x)
    assert out.shape == (2, 5, 10, 14)
    torch.testing.assert_close(out, expected)


def test_resize_conv_matches_transposed_conv_shape() -> None:
    """Beside nn.ConvTranspose2d(k=4, s=2, p=1), the classic 2x learned upsampling, same output shape."""
    x = torch.randn(1, 8, 6, 6)
    assert ResizeConv2d(8, 4)(x).shape == nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)(x).shape


def test_gated_conv_is_phi_feature_times_sigmoid_gate() -> None:
    torch.manual_seed(1)
    layer = GatedConv2d(3, 4, 3, activation=nn.LeakyReLU(0.2))
    x = torch.randn(2, 3, 6, 6)
    both = F.conv2d(x, layer.conv.weight, layer.conv.bias, padding=1)  # (B, 8, H, W)
    expected = F.leaky_relu(both[:, :4], 0.2) * torch.sigmoid(both[:, 4:])
    torch.testing.assert_close(layer(x), expected)
    assert layer(x).shape == (2, 4, 6, 6)
    strided = GatedConv2d(3, 4, 4, stride=2, padding="same", dilation=1)
    assert strided(torch.randn(1, 3, 7, 7)).shape == (1, 4, 4, 4)
    plain = GatedConv2d(3, 4, 3, padding=0, activation=None)
    both = F.conv2d(x, plain.conv.weight, plain.conv.bias)
    torch.testing.assert_close(plain(x), both[:, :4] * torch.sigmoid(both[:, 4:]))


def test_gated_conv_gradcheck_float64() -> None:
    torch.manual_seed(2)
    layer = GatedConv2d(2, 2, 3, stride=2).double()  # ELU by default
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    # and with respect to the weights: every parameter receives a gradient
    layer(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_conv_bn_act_has_no_bias_and_matches_its_parts() -> None:
    torch.manual_seed(3)
    block = ConvBNAct(3, 6, 3, stride=2).eval()
    assert block.conv.bias is None
    nn.init.normal_(block.bn.running_mean)
    nn.init.uniform_(block.bn.running_var, 0.5, 2.0)
    x = torch.randn(2, 3, 9, 9)
    conv = block.conv
    pre = F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, stride=2)  # 9 -> ceil(9/2) = 5 with TF 'same'
    expected = F.relu(F.batch_norm(pre, block.bn.running_mean, block.bn.running_var, block.bn.weight, block.bn.bias))
    torch.testing.assert_close(block(x), expected)
    assert block(x).shape == (2, 6, 5, 5)
    assert isinstance(ConvBNAct(3, 6, act=None).act, nn.Identity)
    assert isinstance(ConvBNAct(3, 6, act=nn.SiLU).act, nn.SiLU)


def test_errors() -> None:
    with pytest.raises(
        ValueError, match=r"ResizeConv2d: mode must be 'bilinear' or 'nearest'; received mode='bicubic'"
    ):
        ResizeConv2d(1, 1, mode="bicubic")
    with pytest.raises(ValueError, match=r"scale_factor must be a positive number; received scale_factor=0"):
        ResizeConv2d(1, 1, scale_factor=0)
    with pytest.raises(ValueError, match=r"ConvBNAct: act must be an nn.Module class.*received act='relu'"):
        ConvBNAct(1, 1, act="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Gate: activation must be .*received activation=3"):
        GatedConv2d(1, 1, 3, activation=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"act=Threshold cannot be built without arg.*missing 2.*pass an instance"):
        ConvBNAct(1, 1, act=nn.Threshold)
    with pytest.raises(ValueError, match=r"ConvBNAct: act must be .*received the class act=<class 'int'>"):
        ConvBNAct(1, 1, act=int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Gate: activation must be .*returned int, not an nn.Module"):
        GatedConv2d(1, 1, 3, activation=lambda: 3)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("fn", [torch.relu, F.relu, F.gelu, lambda t: t * 2])
def test_activation_may_be_a_plain_tensor_function(fn: Any) -> None:
    """torch.relu / F.relu were called with no arguments ('relu() missing 1 required positional argument')."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 6, 6)
    gated = GatedConv2d(3, 4, 3, activation=fn)
    both = F.conv2d(x, gated.conv.weight, gated.conv.bias, padding=1)
    torch.testing.assert_close(gated(x), fn(both[:, :4]) * torch.sigmoid(both[:, 4:]))
    block = ConvBNAct(3, 4, act=fn).eval()
    torch.testing.assert_close(block(x), fn(block.bn(block.conv(x))))
    assert ConvBNAct(3, 4, act=lambda: nn.SiLU()).act.__class__ is nn.SiLU  # a zero-argument factory still works


def test_gated_conv_takes_an_unbatched_map_like_nn_conv2d() -> None:
    """The gate split the channels along dim 1: an unbatched (4, 8, 8) input was cut along H instead and
    gave a (16, 4, 8) tensor; now the channel axis (-3) is split, as nn.Conv2d reads it."""
    torch.manual_seed(0)
    gated = GatedConv2d(4, 8, 3).double()
    x = torch.randn(4, 8, 8, dtype=torch.float64)
    out = gated(x)
    assert out.shape == (8, 8, 8)
    torch.testing.assert_close(out, gated(x.unsqueeze(0))[0])
    full = gated.conv(x)
    torch.testing.assert_close(out, F.elu(full[:8]) * torch.sigmoid(full[8:]))


def test_gate_refuses_an_odd_channel_count() -> None:
    """3 channels chunked into 2 + 1 and broadcast to a 2-channel output without a word."""
    from cnnlab.layers import Gate

    pattern = (r"Gate: the input must be \(B, 2C, H, W\) .*even channel count .*received shape \(1, 3, 4, 4\)\. "
               r"Give the convolution before it 2 \* out_channels")  # fmt: skip
    with pytest.raises(ValueError, match=pattern):
        Gate()(torch.zeros(1, 3, 4, 4))
    assert isinstance(torch.fx.symbolic_trace(GatedConv2d(2, 2, 3)), torch.fx.GraphModule)
