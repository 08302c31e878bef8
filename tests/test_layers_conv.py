"""cnnlab.layers.Conv1d/2d/3d against torch: 'same' at any stride (TensorFlow's rule), padding pairs, modes.

The reference for 'same' is TensorFlow's documented formula written out here, independently of
cnnlab.arith: ``out = ceil(n / s)``, ``total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)``,
``left = total // 2``, ``right = total - left``, applied with ``F.pad`` before an unpadded conv.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.layers import Conv1d, Conv2d, Conv3d

MODES = ["zeros", "reflect", "replicate", "circular"]
F_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def tf_same_pad(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    out = math.ceil(n / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def reference_same(conv: nn.Conv2d, x: torch.Tensor, mode: str = "zeros") -> torch.Tensor:
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    top, bottom = tf_same_pad(x.shape[-2], kh, sh, dh)
    left, right = tf_same_pad(x.shape[-1], kw, sw, dw)
    padded = F.pad(x, (left, right, top, bottom), mode=F_PAD_MODE[mode])
    return F.conv2d(padded, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("n", [8, 9])
def test_same_stride1_keeps_size_for_every_kernel(k: int, n: int) -> None:
    """Stride 1, kernels 1..8 (even ones too): size kept, values equal torch's own padding='same'."""
    torch.manual_seed(k)
    conv = Conv2d(2, 3, k, padding="same")
    torch_conv = nn.Conv2d(2, 3, k, padding="same")
    torch_conv.load_state_dict(conv.state_dict())
    x = torch.randn(1, 2, n, n + 1)
    out = conv(x)
    assert out.shape[-2:] == (n, n + 1)
    torch.testing.assert_close(out, torch_conv(x))  # torch also puts the odd pixel right/bottom
    torch.testing.assert_close(out, reference_same(conv, x))
    if k % 2 == 1:  # symmetric: a plain nn.Conv2d padding, no per-call work
        assert conv.padding == ((k - 1) // 2, (k - 1) // 2)


@pytest.mark.parametrize("s", [2, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
def test_same_strided_gives_ceil_n_over_s_with_tf_split(s: int, k: int) -> None:
    torch.manual_seed(10 * s + k)
    conv = Conv2d(1, 2, k, stride=s, padding="same")
    for n in range(max(1, k - 2), 14):
        x = torch.randn(1, 1, n, n + 2)
        out = conv(x)
        assert out.shape[-2:] == (math.ceil(n / s), math.ceil((n + 2) / s)), (n, k, s)
        torch.testing.assert_close(out, reference_same(conv, x))
        assert conv.padding_pairs((n, n + 2)) == (tf_same_pad(n, k, s), tf_same_pad(n + 2, k, s))


def test_same_extra_pixel_goes_right_and_bottom() -> None:
    """A 2x2 kernel of ones, stride 1, on a one-hot image: the extra zero row/column is at the end."""
    conv = Conv2d(1, 1, 2, padding="same", bias=False)
    nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 2, 2] = 1.0
    out = conv(x)[0, 0]
    # output[i, j] sums x[i:i+2, j:j+2] (padding after the last row/column): only (1..2, 1..2) see x[2, 2]
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("d", [2, 3])
def test_same_with_dilation_and_stride(d: int) -> None:
    conv = Conv2d(2, 2, 3, stride=2, padding="same", dilation=d)
    for n in (7, 8, 11):
        x = torch.randn(1, 2, n, n)
        assert conv(x).shape[-2:] == (math.ceil(n / 2),) * 2
        torch.testing.assert_close(conv(x), reference_same(conv, x))


@pytest.mark.parametrize("mode", MODES)
def test_padding_modes_match_torch(mode: str) -> None:
    """Explicit symmetric padding is torch's own code path: identical to nn.Conv2d(padding_mode=mode)."""
    torch.manual_seed(0)
    conv = Conv2d(3, 4, 3, stride=2, padding=(1, 2), padding_mode=mode)
    ref = nn.Conv2d(3, 4, 3, stride=2, padding=(1, 2), padding_mode=mode)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 9, 10)
    torch.testing.assert_close(conv(x), ref(x))
    same = Conv2d(3, 4, 4, padding="same", padding_mode=mode)  # stride 1, even kernel: torch's 'same'
    ref_same = nn.Conv2d(3, 4, 4, padding="same", padding_mode=mode)
    ref_same.load_state_dict(same.state_dict())
    torch.testing.assert_close(same(x), ref_same(x))


@pytest.mark.parametrize("mode", MODES)
def test_strided_same_uses_the_padding_mode(mode: str) -> None:
    torch.manual_seed(1)
    conv = Conv2d(2, 3, 4, stride=3, padding="same", padding_mode=mode)
    x = torch.randn(1, 2, 10, 11)
    torch.testing.assert_close(conv(x), reference_same(conv, x, mode))


def test_asymmetric_pairs_and_valid() -> None:
    torch.manual_seed(2)
    conv = Conv2d(1, 2, 3, padding=((0, 2), (1, 0)), padding_mode="replicate")
    x = torch.randn(1, 1, 6, 6)
    expected = F.conv2d(F.pad(x, (1, 0, 0, 2), mode="replicate"), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)
    assert conv.padding_pairs((6, 6)) == ((0, 2), (1, 0))
    valid = Conv2d(1, 2, 3, padding="valid")
    assert valid.padding == (0, 0) and valid(x).shape[-2:] == (4, 4)


def test_is_a_torch_conv_with_torch_state_dict() -> None:
    conv = Conv2d(3, 8, 5, stride=2, padding="same", groups=1)
    assert isinstance(conv, nn.Conv2d)
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert "padding='same'" in repr(conv)


def test_conv1d_and_conv3d_same() -> None:
    c1 = Conv1d(2, 3, 4, stride=3, padding="same")
    x1 = torch.randn(1, 2, 10)
    left, right = tf_same_pad(10, 4, 3)
    torch.testing.assert_close(c1(x1), F.conv1d(F.pad(x1, (left, right)), c1.weight, c1.bias, 3))
    c3 = Conv3d(1, 2, (2, 3, 4), stride=2, padding="same")
    assert c3(torch.randn(1, 1, 5, 6, 7)).shape == (1, 2, 3, 3, 4)
    assert isinstance(c1, nn.Conv1d) and isinstance(c3, nn.Conv3d)


def test_gradients_through_strided_same() -> None:
    torch.manual_seed(3)
    conv = Conv2d(2, 2, 2, stride=2, padding="same", padding_mode="reflect").double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_errors_name_argument_rule_value_and_fix() -> None:
    with pytest.raises(ValueError, match=r"padding must be an int.*received padding='full'.*padding='same'"):
        Conv2d(1, 1, 3, padding="full")
    with pytest.raises(ValueError, match=r"Conv2d: padding_mode must be one of .*received padding_mode='mirror'"):
        Conv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"stride must be positive.*received stride=0"):
        Conv2d(1, 1, 3, stride=0, padding="same")
    with pytest.raises(ValueError, match=r"padding must be >= 0.*received \(-1, 1\)"):
        Conv2d(1, 1, 3, padding=((-1, 1), (0, 0)))


def test_reflect_and_circular_padding_larger_than_the_map_is_said_in_conv_terms() -> None:
    """F.pad's raw 'Padding size should be less than ...' became the rule, the sizes and the fix."""
    x = torch.randn(1, 1, 2, 2)
    with pytest.raises(
        ValueError,
        match=r"Conv2d: padding_mode 'reflect' needs padding smaller than the input along H; 'same' padding at "
        r"stride \(2, 2\) pads an input of spatial size \(2, 2\) by 2 .*padding_mode 'zeros' / 'replicate'",
    ):
        Conv2d(1, 1, 5, stride=2, padding="same", padding_mode="reflect")(x)
    with pytest.raises(ValueError, match=r"Conv2d: padding_mode 'circular' needs padding at most the input along W"):
        Conv2d(1, 1, 3, padding=((0, 0), (3, 0)), padding_mode="circular")(x)
    with pytest.raises(ValueError, match=r"Conv1d: padding_mode 'reflect' .* along L"):
        Conv1d(1, 1, 4, stride=2, padding="same", padding_mode="reflect")(torch.randn(1, 1, 1))
    # at the limit both still run: reflect by size - 1, circular by the whole size
    assert Conv2d(1, 1, 3, stride=2, padding="same", padding_mode="reflect")(x).shape[-2:] == (1, 1)
    assert Conv2d(1, 1, 3, padding=((1, 1), (2, 0)), padding_mode="circular")(x).shape[-2:] == (2, 2)


@pytest.mark.parametrize(("cin", "cout", "groups"), [(3, 4, 2), (4, 6, 4), (4, 4, 0)])
def test_groups_that_do_not_divide_the_channels_are_said_in_one_paragraph(cin: int, cout: int, groups: int) -> None:
    """torch said only 'in_channels must be divisible by groups' (no values, no fix; out_channels not at all)."""
    with pytest.raises(
        ValueError,
        match=rf"Conv2d: groups must be a positive int that divides both in_channels and out_channels .*received "
        rf"groups={groups} with in_channels={cin}, out_channels={cout}\. Use groups=1 or a common divisor",
    ):
        Conv2d(cin, cout, 3, groups=groups)
    conv = Conv2d(4, 6, 3, groups=2, padding="same")  # a valid grouping is still torch's grouped conv
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1, groups=2))
