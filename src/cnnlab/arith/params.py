"""Parameter and multiply-accumulate (MAC) counts of conv, transposed conv, linear and batch-norm layers.

A MAC is one multiply-add; FLOPs = 2 x MACs. Bias additions are not counted as MACs. Kernels given as
one int are square 2-D kernels unless ``ndim`` says otherwise (``conv_params(3, 64, 5)`` is a 5x5).
"""

from __future__ import annotations

import math

from cnnlab.arith._norm import IntOrTuple, infer_ndim, to_tuple

__all__ = [
    "batchnorm_params",
    "bilinear_macs",
    "conv_macs",
    "conv_params",
    "conv_transpose_macs",
    "conv_transpose_params",
    "linear_macs",
    "linear_params",
]


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; received {name}={value!r}. Use 1 or more.")
    return value


def _check_groups(in_ch: int, out_ch: int, groups: int) -> None:
    _positive(groups, "groups")
    for name, ch in (("in_channels", in_ch), ("out_channels", out_ch)):
        if ch % groups:
            common = math.gcd(in_ch, out_ch)
            hint = f"groups={common} or groups=1" if common > 1 else "groups=1"
            raise ValueError(
                f"{name} must be divisible by groups (each group sees {name}/groups channels); received "
                f"{name}={ch}, groups={groups}. Use groups that divides both in_channels={in_ch} and "
                f"out_channels={out_ch}, e.g. {hint}."
            )


def _kernel_volume(k: IntOrTuple, ndim: int | None) -> int:
    # prod(k) over the spatial axes
    nd = ndim if ndim is not None else infer_ndim(k, default=2)
    return math.prod(to_tuple(k, nd, "kernel", minimum=1))


def conv_params(
    in_ch: int, out_ch: int, k: IntOrTuple, groups: int = 1, bias: bool = True, *, ndim: int | None = None
) -> int:
    """Parameters of a convolution: ``out_ch * (in_ch/groups) * prod(k) + out_ch`` (bias).

    >>> conv_params(3, 64, 5)   # 3*5*5*64 + 64
    4864
    >>> conv_params(32, 5, 1)   # five 1x1 filters over 32 channels
    165
    """
    _positive(in_ch, "in_channels")
    _positive(out_ch, "out_channels")
    _check_groups(in_ch, out_ch, groups)
    # out * (in / groups) * prod(k) + out * bias
    return out_ch * (in_ch // groups) * _kernel_volume(k, ndim) + (out_ch if bias else 0)


def conv_transpose_params(
    in_ch: int, out_ch: int, k: IntOrTuple, groups: int = 1, bias: bool = True, *, ndim: int | None = None
) -> int:
    """Parameters of a transposed convolution: weight ``(in_ch, out_ch/groups, *k)`` plus ``out_ch`` biases.

    >>> conv_transpose_params(16, 8, 4)   # 16*8*4*4 + 8
    2056
    """
    _positive(in_ch, "in_channels")
    _positive(out_ch, "out_channels")
    _check_groups(in_ch, out_ch, groups)
    # in * (out / groups) * prod(k) + out * bias
    return in_ch * (out_ch // groups) * _kernel_volume(k, ndim) + (out_ch if bias else 0)


def linear_params(in_f: int, out_f: int, bias: bool = True) -> int:
    """Parameters of a fully connected layer: ``in_f * out_f + out_f``.

    >>> linear_params(84, 10)
    850
    """
    _positive(in_f, "in_features")
    _positive(out_f, "out_features")
    # in * out + out * bias
    return in_f * out_f + (out_f if bias else 0)


def batchnorm_params(c: int, affine: bool = True) -> int:
    """Learnable parameters of batch norm: ``2c`` (scale and shift); running statistics are buffers.

    >>> batchnorm_params(64)
    128
    """
    _positive(c, "num_features")
    # gamma and beta per channel
    return 2 * c if affine else 0


def conv_macs(
    in_ch: int, out_ch: int, k: IntOrTuple, out_size: IntOrTuple, groups: int = 1, *, ndim: int | None = None
) -> int:
    """MACs of a convolution: ``out_ch * (in_ch/groups) * prod(k) * prod(out_size)``.

    >>> conv_macs(1, 6, 5, 28)   # LeNet-5 C1: 6*25*28*28
    117600
    """
    _positive(in_ch, "in_channels")
    _positive(out_ch, "out_channels")
    _check_groups(in_ch, out_ch, groups)
    nd = ndim if ndim is not None else infer_ndim(k, out_size, default=2)
    outs = to_tuple(out_size, nd, "output size", minimum=1)
    # one multiply-add per weight per output position
    return out_ch * (in_ch // groups) * _kernel_volume(k, nd) * math.prod(outs)


def conv_transpose_macs(
    in_ch: int, out_ch: int, k: IntOrTuple, in_size: IntOrTuple, groups: int = 1, *, ndim: int | None = None
) -> int:
    """MACs of a transposed convolution: ``in_ch * (out_ch/groups) * prod(k) * prod(in_size)``.

    Every input position scatters one full kernel per output channel (padding is not subtracted).

    >>> conv_transpose_macs(16, 8, 4, 16)
    524288
    """
    _positive(in_ch, "in_channels")
    _positive(out_ch, "out_channels")
    _check_groups(in_ch, out_ch, groups)
    nd = ndim if ndim is not None else infer_ndim(k, in_size, default=2)
    ins = to_tuple(in_size, nd, "input size", minimum=1)
    # one multiply-add per weight per input position
    return in_ch * (out_ch // groups) * _kernel_volume(k, nd) * math.prod(ins)


def linear_macs(in_f: int, out_f: int, positions: int = 1) -> int:
    """MACs of a fully connected layer applied at ``positions`` places: ``in_f * out_f * positions``.

    >>> linear_macs(400, 120)
    48000
    """
    _positive(in_f, "in_features")
    _positive(out_f, "out_features")
    _positive(positions, "positions")
    # in * out multiply-adds per position
    return in_f * out_f * positions


def bilinear_macs(in1_f: int, in2_f: int, out_f: int, positions: int = 1) -> int:
    """MACs of ``nn.Bilinear`` applied at ``positions`` places: ``in1_f * in2_f * out_f * positions``.

    ``y_k = x1^T W_k x2 + b_k``: one multiply-add per weight per position, the rule :func:`linear_macs`
    follows (torch evaluates it as ``(x1 W) x2``, which adds ``in2_f * out_f`` more per position).

    >>> bilinear_macs(16, 8, 5)
    640
    """
    _positive(in1_f, "in1_features")
    _positive(in2_f, "in2_features")
    _positive(out_f, "out_features")
    _positive(positions, "positions")
    return in1_f * in2_f * out_f * positions
