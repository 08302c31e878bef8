"""P4 layers against a direct, loop-written definition of group convolution, plus their equivariance.

The reference below is Cohen and Welling's formula (2016, eq. 10-11) for 90-degree rotations,
written plane by plane with ``F.conv2d``; it shares nothing with the layers' stacked-weight code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.layers import P4BatchNorm, P4GroupConv2d, P4LiftConv2d, P4MaxPool2d, P4RotationPool, p4_rotate
from cnnlab.layers import rotation_pool as rotation_pool_fn


def rot(t: torch.Tensor, r: int) -> torch.Tensor:
    return torch.rot90(t, r, dims=(-2, -1))


def base_weight(layer: nn.Module) -> torch.Tensor:
    return layer.parametrizations.weight.original  # type: ignore[union-attr, return-value]


def base_bias(layer: nn.Module) -> torch.Tensor:
    return layer.parametrizations.bias.original  # type: ignore[union-attr, return-value]


def reference_lift(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int) -> torch.Tensor:
    """out[:, o, r] = x * rot(w[o], r) (+ b[o]): ``(B, in, H, W)`` -> ``(B, out, 4, H', W')``."""
    planes = [F.conv2d(x, rot(w, r), b, padding=padding) for r in range(4)]
    return torch.stack(planes, dim=2)


def reference_group(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int) -> torch.Tensor:
    """out[:, o, r] = sum_{i, s} x[:, i, s] * rot(w[o, i, (s - r) % 4], r) (+ b[o])."""
    planes = []
    for r in range(4):
        acc = 0
        for s in range(4):
            acc = acc + F.conv2d(x[:, :, s], rot(w[:, :, (s - r) % 4], r), padding=padding)
        planes.append(acc if b is None else acc + b.view(1, -1, 1, 1))
    return torch.stack(planes, dim=2)


@pytest.mark.parametrize("padding", [0, 1])
def test_lift_matches_reference(padding: int) -> None:
    torch.manual_seed(0)
    layer = P4LiftConv2d(2, 3, 3, padding=padding)
    x = torch.randn(2, 2, 7, 7)
    expected = reference_lift(x, base_weight(layer), base_bias(layer), padding)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize(("k", "padding", "bias"), [(3, 1, True), (2, 0, False), (1, 0, True)])
def test_group_conv_matches_reference(k: int, padding: int, bias: bool) -> None:
    torch.manual_seed(1)
    layer = P4GroupConv2d(3, 2, k, padding=padding, bias=bias)
    x = torch.randn(2, 3, 4, 6, 6)
    w = base_weight(layer).unflatten(1, (3, 4))  # stored (out, in*4, k, k) -> (out, in, 4, k, k)
    expected = reference_group(x, w, base_bias(layer) if bias else None, padding)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_lift_and_group_conv_are_equivariant(r: int) -> None:
    """f(rot90(x, r)) == p4_rotate(f(x), r): planes rotate and the orientation axis shifts by r."""
    torch.manual_seed(2)
    lift, group = P4LiftConv2d(1, 4, 3, padding=1).double(), P4GroupConv2d(4, 3, 3).double()
    x = torch.randn(2, 1, 9, 9, dtype=torch.float64)
    y = lift(x)
    torch.testing.assert_close(lift(rot(x, r)), p4_rotate(y, r))
    torch.testing.assert_close(group(p4_rotate(y, r)), p4_rotate(group(y), r))
    # and without the orientation shift the maps do NOT match (the shift is what makes it P4)
    assert not torch.allclose(lift(rot(x, r)), rot(y, r), atol=1e-3)


def test_parameter_counts_are_a_quarter_of_the_plain_conv() -> None:
    lift, group = P4LiftConv2d(3, 8, 3), P4GroupConv2d(8, 16, 3)
    assert sum(p.numel() for p in lift.parameters()) == 8 * 3 * 9 + 8
    assert sum(p.numel() for p in group.parameters()) == 16 * 8 * 4 * 9 + 16
    assert all(p.dim() <= 4 for p in group.parameters())  # so channels_last conversion works
    assert lift.weight.shape == (32, 3, 3, 3) and group.weight.shape == (64, 32, 3, 3)  # the conv's real weight
    assert isinstance(group, nn.Conv2d)
    assert (lift.p4_in_channels, lift.p4_out_channels, group.in_channels) == (3, 8, 32)


def test_state_dict_round_trip_and_bias_tied_across_orientations() -> None:
    a, b = P4GroupConv2d(2, 3, 3), P4GroupConv2d(2, 3, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 2, 4, 5, 5)
    assert torch.equal(a(x), b(x))
    assert set(a.state_dict()) == {"parametrizations.weight.original", "parametrizations.bias.original"}
    assert torch.equal(a.bias.view(3, 4), base_bias(a).view(3, 1).expand(3, 4))


@pytest.mark.parametrize("layer_name", ["lift", "group"])
def test_gradcheck_float64(layer_name: str) -> None:
    torch.manual_seed(3)
    if layer_name == "lift":
        layer: nn.Module = P4LiftConv2d(1, 2, 3, padding=1).double()
        x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    else:
        layer = P4GroupConv2d(1, 1, 2).double()
        x = torch.randn(1, 1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    w = base_weight(layer).detach().clone().requires_grad_(True)

    def run(inp: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # the free parameter is swapped in, so the gradient runs through the parametrization too
        out: torch.Tensor = torch.func.functional_call(layer, {"parametrizations.weight.original": weight}, (inp,))
        return out

    assert torch.autograd.gradcheck(run, (x, w))
    run(x, w).sum().backward()  # the check is not vacuous: the base weight does receive a gradient
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_batchnorm_shares_statistics_across_orientations() -> None:
    torch.manual_seed(4)
    bn = P4BatchNorm(3)
    x = torch.randn(4, 3, 4, 5, 5) * 3 + 1
    out = bn(x)  # training mode: batch statistics over (B, 4, H, W) per field
    mean = x.mean(dim=(0, 2, 3, 4), keepdim=True)
    var = x.var(dim=(0, 2, 3, 4), unbiased=False, keepdim=True)
    torch.testing.assert_close(out, (x - mean) / torch.sqrt(var + bn.eps))
    assert bn.running_mean.shape == (3,)
    torch.testing.assert_close(bn(p4_rotate(x)), p4_rotate(bn(x)))  # equivariant in training mode too
    with pytest.raises(
        ValueError, match=r"P4BatchNorm: the input must be a P4 feature map .*received shape \(2, 3, 5, 5\)"
    ):
        bn(torch.randn(2, 3, 5, 5))


def test_gradcheck_batchnorm_float64() -> None:
    bn = P4BatchNorm(2).double()
    x = torch.randn(2, 2, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(bn, (x,))


def test_rotation_pool_and_p4_max_pool() -> None:
    torch.manual_seed(5)
    y = torch.randn(2, 3, 4, 6, 6)
    torch.testing.assert_close(P4RotationPool("max")(y), y.max(dim=2).values)
    torch.testing.assert_close(P4RotationPool("mean")(y), y.mean(dim=2))
    # orientation pooling turns P4 equivariance into plain rotation of the maps
    torch.testing.assert_close(rotation_pool_fn(p4_rotate(y)), rot(rotation_pool_fn(y), 1))
    pooled = P4MaxPool2d(2)(y)
    assert pooled.shape == (2, 3, 4, 3, 3)
    for r in range(4):
        torch.testing.assert_close(pooled[:, :, r], F.max_pool2d(y[:, :, r], 2))
    torch.testing.assert_close(P4MaxPool2d(2)(p4_rotate(y)), p4_rotate(pooled))  # even size: exact


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"rotation_pool: mode must be 'max' or 'mean'; received mode='sum'"):
        rotation_pool_fn(torch.zeros(1, 1, 4, 2, 2), "sum")
    with pytest.raises(ValueError, match=r"P4RotationPool: mode must be 'max' or 'mean'; received mode='min'"):
        P4RotationPool("min")
    with pytest.raises(ValueError, match=r"P4GroupConv2d: the input must be a P4 feature map.*Lift an image"):
        P4GroupConv2d(2, 2, 3)(torch.zeros(1, 8, 5, 5))
    with pytest.raises(ValueError, match=r"P4LiftConv2d: out_channels must be a positive int; received out_channels=0"):
        P4LiftConv2d(1, 0, 3)
    with pytest.raises(ValueError, match=r"P4LiftConv2d: padding_mode must be one of"):
        P4LiftConv2d(1, 2, 3, padding_mode="mirror")
    for bad in (0, -1, 1.5):  # was a ZeroDivisionError from the weight init for 0
        with pytest.raises(ValueError, match=rf"P4LiftConv2d: in_channels must be a positive int; .*={bad}"):
            P4LiftConv2d(bad, 2, 3)  # type: ignore[arg-type]


def test_lift_refuses_what_is_not_a_batch_of_images() -> None:
    """An unbatched (C, H, W) image ran through nn.Conv2d and the orientation unflatten split H instead:
    (1, 8, 8) gave a (8, 2, 4, 8) tensor without a word."""
    lift = P4LiftConv2d(1, 2, 3, padding=1)
    with pytest.raises(ValueError, match=r"P4LiftConv2d: the input must be a batch of images of shape "
                                         r"\(B, 1, H, W\); received shape \(1, 8, 8\) \(one unbatched image: add "
                                         r"the batch axis with x\.unsqueeze\(0\)\)"):  # fmt: skip
        lift(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match=r"received shape \(2, 1, 4, 8, 8\)\. .*goes to P4GroupConv2d"):
        lift(torch.zeros(2, 1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\); received shape \(2, 3, 8, 8\)\. .*set in_channels"):
        lift(torch.zeros(2, 3, 8, 8))
    assert lift(torch.zeros(2, 1, 8, 8)).shape == (2, 2, 4, 8, 8)
    assert isinstance(torch.fx.symbolic_trace(lift), torch.fx.GraphModule)  # tracing skips the check


def test_group_conv_field_count_is_said_in_p4_fields() -> None:
    """A wrong field count is told in fields (3 vs 2), not torch's merged orientation planes (12 vs 8)."""
    with pytest.raises(ValueError, match=r"P4GroupConv2d: expects 2 P4 fields .*received 3 fields.*in_channels=3"):
        P4GroupConv2d(2, 2, 3)(torch.zeros(1, 3, 4, 5, 5))


def test_channels_last_and_bf16_autocast_run() -> None:
    """The training loop converts models to channels_last and may autocast: P4 layers must follow."""
    torch.manual_seed(6)
    net = nn.Sequential(P4LiftConv2d(1, 2, 3, padding=1), P4BatchNorm(2), P4GroupConv2d(2, 2, 3), P4RotationPool())
    x = torch.randn(2, 1, 8, 8)
    expected = net(x)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    out = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).shape == (2, 2, 6, 6)
