"""The receptive-field recurrence, per spatial axis.

State after each layer (all in input-pixel units, input pixel ``i`` has its centre at coordinate ``i``):

* ``size``  - how many input pixels can influence one output unit (its receptive field),
* ``jump``  - distance in input pixels between the centres of two neighbouring output units,
* ``start`` - centre of the first output unit (index 0), in input coordinates.

A convolution or pooling layer with effective kernel ``k_eff = d(k-1)+1``, stride ``s`` and left
padding ``p_left`` updates them as::

    jump_out  = jump_in * s
    size_out  = size_in + (k_eff - 1) * jump_in
    start_out = start_in + ((k_eff - 1)/2 - p_left) * jump_in

Transposed convolution and upsampling make the jump fractional (``jump_in / s``): several output units
sit between two input pixels. Their receptive field still means *the input region that can influence
one output unit*: for a transposed conv it is the widest span of input units any single output unit
receives a kernel tap from, for nearest upsampling one unit, for (bi)linear upsampling two. With a
fractional jump a later layer's receptive field can be fractional too; :attr:`RF.extent` keeps that
exact value and :attr:`RF.size` rounds it up to whole pixels (the most any unit sees).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cnnlab.arith._norm import IntOrTuple, Padding, axis_names, is_finite_positive, to_pairs, to_tuple
from cnnlab.arith.sizes import effective_kernel, same_padding

__all__ = ["RF", "rf_conv", "rf_conv_transpose", "rf_input", "rf_upsample"]

_EPS = 1e-9


@dataclass(frozen=True)
class RF:
    """Receptive field of one layer's units, per spatial axis (see the module docstring).

    >>> rf_conv(rf_conv(rf_input(2), 3), 3)
    RF(size=(5, 5), jump=(1.0, 1.0), start=(2.0, 2.0))
    """

    size: tuple[int, ...]
    jump: tuple[float, ...]
    start: tuple[float, ...]
    # exact (possibly fractional after upsampling) size; None means equal to ``size``
    extent: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (len(self.size) == len(self.jump) == len(self.start)):
            raise ValueError(
                f"RF needs one size, jump and start per axis; received size={self.size}, "
                f"jump={self.jump}, start={self.start}."
            )

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.size)

    def exact_size(self) -> tuple[float, ...]:
        """The unrounded receptive-field size per axis."""
        return self.extent if self.extent is not None else tuple(float(v) for v in self.size)

    def center(self, index: int | Sequence[int]) -> tuple[float, ...]:
        """Centre of output unit ``index`` in input coordinates: ``start + index * jump``.

        >>> rf_conv(rf_input(1), 3, s=2).center(4)
        (9.0,)
        """
        idx = to_tuple(index, self.ndim, "index")
        return tuple(st + i * j for st, i, j in zip(self.start, idx, self.jump))

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """``{"size": [...], "jump": [...], "start": [...]}`` as in ``cnnlab inspect --format json``."""
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start)}


def _make(extent: Sequence[float], jump: Sequence[float], start: Sequence[float]) -> RF:
    # size = ceil(extent): the largest number of whole input pixels one unit can see
    size = tuple(max(1, math.ceil(e - _EPS)) for e in extent)
    exact = tuple(float(e) for e in extent)
    keep = None if all(abs(e - s) < _EPS for e, s in zip(exact, size)) else exact
    jumps = tuple(float(j) for j in jump)
    return RF(size=size, jump=jumps, start=tuple(float(s) for s in start), extent=keep)


def rf_input(ndim: int) -> RF:
    """The input itself: size 1, jump 1, start 0.0 on each of ``ndim`` axes.

    >>> rf_input(2)
    RF(size=(1, 1), jump=(1.0, 1.0), start=(0.0, 0.0))
    """
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1:
        raise ValueError(f"ndim must be a positive int (1, 2 or 3 spatial axes); received ndim={ndim!r}.")
    return RF(size=(1,) * ndim, jump=(1.0,) * ndim, start=(0.0,) * ndim)


def _left_padding(
    rf: RF, p: Padding, ks: tuple[int, ...], ss: tuple[int, ...], ds: tuple[int, ...], n: IntOrTuple | None
) -> tuple[int, ...]:
    if p == "same":
        if n is None and any(si != 1 for si in ss):
            raise ValueError(
                f"padding='same' with stride {ss} depends on the input size; pass n=<input size> to "
                "rf_conv or give the padding explicitly as (left, right) pairs."
            )
        ns = to_tuple(n if n is not None else 1, rf.ndim, "input size", minimum=1)
        return tuple(pair[0] for pair in same_padding(ns, ks, ss, ds))
    if isinstance(p, str) and p != "valid":
        raise ValueError(f"padding must be an int, a tuple, pairs, 'same' or 'valid'; received {p!r}.")
    return tuple(pair[0] for pair in to_pairs(p, rf.ndim, "padding"))


def rf_conv(
    rf: RF,
    k: IntOrTuple,
    s: IntOrTuple = 1,
    p: Padding = 0,
    d: IntOrTuple = 1,
    *,
    n: IntOrTuple | None = None,
) -> RF:
    """Receptive field after a convolution or pooling layer (only the left padding moves ``start``).

    ``n`` (the layer's input size) is needed only for ``p='same'`` with a stride above 1.

    >>> rf_conv(rf_input(1), 3, d=2)
    RF(size=(5,), jump=(1.0,), start=(2.0,))
    >>> rf_conv(rf_input(2), 2, s=2)
    RF(size=(2, 2), jump=(2.0, 2.0), start=(0.5, 0.5))
    """
    ks = to_tuple(k, rf.ndim, "kernel", minimum=1)
    ss = to_tuple(s, rf.ndim, "stride", minimum=1)
    ds = to_tuple(d, rf.ndim, "dilation", minimum=1)
    lefts = _left_padding(rf, p, ks, ss, ds, n)
    ke = effective_kernel(ks, ds)
    extent, jump, start = [], [], []
    for e, j, st, kei, si, pl in zip(rf.exact_size(), rf.jump, rf.start, ke, ss, lefts):
        extent.append(e + (kei - 1) * j)  # size_out = size_in + (k_eff - 1) * jump_in
        jump.append(j * si)  # jump_out = jump_in * s
        start.append(st + ((kei - 1) / 2 - pl) * j)  # start_out = start_in + ((k_eff-1)/2 - p_left) * jump_in
    return _make(extent, jump, start)


def _transpose_span(k: int, s: int, d: int) -> int:
    # widest run of input units one output unit draws from: output o = i*s + j*d - p, so for each
    # residue r = (o + p) mod s the taps j with (r - j*d) % s == 0 reach inputs (j_max - j_min)*d/s + 1 apart
    best = 1
    for r in range(s):
        taps = [j for j in range(k) if (r - j * d) % s == 0]
        if taps:
            best = max(best, (max(taps) - min(taps)) * d // s + 1)
    return best


def rf_conv_transpose(rf: RF, k: IntOrTuple, s: IntOrTuple = 1, p: IntOrTuple = 0, d: IntOrTuple = 1) -> RF:
    """Receptive field after a transposed convolution: the jump shrinks to ``jump_in / s``.

    ``size`` counts the input units that can influence one output unit (the widest case); ``start`` is
    the centre of output unit 0 in input coordinates, ``start_in + (p - (k_eff-1)/2) / s * jump_in``.

    >>> rf_conv_transpose(rf_input(1), 4, s=2, p=1)
    RF(size=(2,), jump=(0.5,), start=(-0.25,))
    """
    ks = to_tuple(k, rf.ndim, "kernel", minimum=1)
    ss = to_tuple(s, rf.ndim, "stride", minimum=1)
    ds = to_tuple(d, rf.ndim, "dilation", minimum=1)
    ps = to_tuple(p, rf.ndim, "padding", minimum=0)
    ke = effective_kernel(ks, ds)
    extent, jump, start = [], [], []
    for e, j, st, ki, kei, si, di, pi in zip(rf.exact_size(), rf.jump, rf.start, ks, ke, ss, ds, ps):
        # size_out = size_in + (span - 1) * jump_in
        extent.append(e + (_transpose_span(ki, si, di) - 1) * j)
        # jump_out = jump_in / s
        jump.append(j / si)
        # start_out = start_in + (p - (k_eff-1)/2) / s * jump_in
        start.append(st + (pi - (kei - 1) / 2) / si * j)
    return _make(extent, jump, start)


def rf_upsample(
    rf: RF, scale: float | Sequence[float], mode: Literal["nearest", "linear", "bilinear"] = "nearest"
) -> RF:
    """Receptive field after upsampling by ``scale`` (``align_corners=False`` geometry).

    Nearest copies one input unit (size unchanged); (bi)linear mixes two neighbours per axis (size +
    one jump). Output unit 0 is centred at ``start_in + (0.5/scale - 0.5) * jump_in``.

    >>> rf_upsample(rf_input(2), 2)
    RF(size=(1, 1), jump=(0.5, 0.5), start=(-0.25, -0.25))
    """
    scales = (float(scale),) * rf.ndim if isinstance(scale, (int, float)) else tuple(float(v) for v in scale)
    if len(scales) != rf.ndim or not all(is_finite_positive(v) for v in scales):
        raise ValueError(
            f"scale must be a positive number or one per axis ({', '.join(axis_names(rf.ndim))}); "
            f"received scale={scale!r}. Use e.g. scale=2."
        )
    if mode not in ("nearest", "linear", "bilinear"):
        raise ValueError(f"mode must be 'nearest', 'linear' or 'bilinear'; received mode={mode!r}.")
    grow = 0.0 if mode == "nearest" else 1.0
    extent, jump, start = [], [], []
    for e, j, st, sc in zip(rf.exact_size(), rf.jump, rf.start, scales):
        extent.append(e + grow * j)  # nearest: one source unit; linear: two neighbours
        jump.append(j / sc)  # jump_out = jump_in / scale
        start.append(st + (0.5 / sc - 0.5) * j)  # centre of output 0 = (0 + 0.5)/scale - 0.5
    return _make(extent, jump, start)
