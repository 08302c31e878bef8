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
one output unit*, and ``size`` is the widest such region over all units (some see a pixel less; a
stride-2 transposed conv with a 1-tap kernel leaves units that see nothing). The continuous formula
above would round wrongly there, so sizes are computed exactly by :mod:`cnnlab.arith._support` (equal
to the recurrence while every jump is whole); ``jump`` and ``start`` stay the geometric values, so
``start + i*jump`` is where output unit ``i`` sits on the input (``align_corners=False`` geometry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from cnnlab.arith import _support
from cnnlab.arith._norm import IntOrTuple, Padding, axis_names, is_finite_positive, to_pairs, to_tuple
from cnnlab.arith._support import AxisSupport
from cnnlab.arith.sizes import effective_kernel, same_padding

__all__ = ["RF", "rf_conv", "rf_conv_transpose", "rf_input", "rf_upsample", "rf_whole_map"]


@dataclass(frozen=True)
class RF:
    """Receptive field of one layer's units, per spatial axis (see the module docstring).

    >>> rf_conv(rf_conv(rf_input(2), 3), 3)
    RF(size=(5, 5), jump=(1.0, 1.0), start=(2.0, 2.0))
    """

    size: tuple[int, ...]
    jump: tuple[float, ...]
    start: tuple[float, ...]
    # exact per-axis dependence pattern behind ``size`` (see _support); None for a hand-made RF
    support: tuple[AxisSupport, ...] | None = field(default=None, compare=False, repr=False)

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

    def supports(self) -> tuple[AxisSupport, ...]:
        """The exact dependence pattern per axis (rebuilt from size/jump/start for a hand-made RF)."""
        if self.support is not None:
            return self.support
        return tuple(
            _support.from_recurrence(size, jump, start)
            for size, jump, start in zip(self.size, self.jump, self.start)
        )

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


def _make(supports: Sequence[AxisSupport], jump: Sequence[float], start: Sequence[float]) -> RF:
    size = tuple(sup.widest() for sup in supports)
    return RF(size=size, jump=tuple(jump), start=tuple(start), support=tuple(supports))


def rf_input(ndim: int) -> RF:
    """The input itself: size 1, jump 1, start 0.0 on each of ``ndim`` axes.

    >>> rf_input(2)
    RF(size=(1, 1), jump=(1.0, 1.0), start=(0.0, 0.0))
    """
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1:
        raise ValueError(f"ndim must be a positive int (1, 2 or 3 spatial axes); received ndim={ndim!r}.")
    return _make([_support.identity()] * ndim, (1.0,) * ndim, (0.0,) * ndim)


def _padding_pairs(
    rf: RF, p: Padding, ks: tuple[int, ...], ss: tuple[int, ...], ds: tuple[int, ...], n: IntOrTuple | None
) -> tuple[tuple[int, int], ...]:
    if p == "same":
        if n is None and any(si != 1 for si in ss):
            raise ValueError(
                f"padding='same' with stride {ss} depends on the input size; pass n=<input size> to "
                "rf_conv or give the padding explicitly as (left, right) pairs."
            )
        ns = to_tuple(n if n is not None else 1, rf.ndim, "input size", minimum=1)
        return tuple((int(a), int(b)) for a, b in same_padding(ns, ks, ss, ds))
    if isinstance(p, str) and p != "valid":
        raise ValueError(f"padding must be an int, a tuple, pairs, 'same' or 'valid'; received {p!r}.")
    return tuple((int(a), int(b)) for a, b in to_pairs(p, rf.ndim, "padding"))


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
    pairs = _padding_pairs(rf, p, ks, ss, ds, n)
    ke = effective_kernel(ks, ds)
    supports, jump, start = [], [], []
    for sup, j, st, ki, kei, si, di, (pl, pr) in zip(rf.supports(), rf.jump, rf.start, ks, ke, ss, ds, pairs):
        # size: widest input span of one unit (= size_in + (k_eff - 1) * jump_in while jumps are whole)
        supports.append(_support.conv(sup, ki, si, pl, di, pr))
        jump.append(j * si)  # jump_out = jump_in * s
        start.append(st + ((kei - 1) / 2 - pl) * j)  # start_out = start_in + ((k_eff-1)/2 - p_left) * jump_in
    return _make(supports, jump, start)


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
    supports, jump, start = [], [], []
    for sup, j, st, ki, kei, si, di, pi in zip(rf.supports(), rf.jump, rf.start, ks, ke, ss, ds, ps):
        # size: widest run of inputs feeding one output, o = i*s + j*d - p
        supports.append(_support.conv_transpose(sup, ki, si, pi, di))
        # jump_out = jump_in / s
        jump.append(j / si)
        # start_out = start_in + (p - (k_eff-1)/2) / s * jump_in
        start.append(st + (pi - (kei - 1) / 2) / si * j)
    return _make(supports, jump, start)


# PyTorch's upsampling modes -> how arith follows them (_support.upsample)
_MODES = {
    "nearest": "nearest", "nearest-exact": "nearest-exact", "linear": "linear", "bilinear": "linear",
    "trilinear": "linear", "bicubic": "cubic",
}  # fmt: skip
UpsampleMode = Literal["nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic"]


def rf_upsample(
    rf: RF, scale: float | Sequence[float], mode: UpsampleMode = "nearest", *, align_corners: bool = False
) -> RF:
    """Receptive field after upsampling by ``scale`` (output units per input unit), as PyTorch computes it.

    Nearest copies one input unit (``floor(o / scale)``; nearest-exact ``floor((o + 1/2)/scale)``);
    (bi/tri)linear mixes the two neighbours of ``(o + 1/2)/scale - 1/2``, bicubic four. Output unit 0 is
    centred at ``start_in + (0.5/scale - 0.5) * jump_in``. With ``align_corners`` (linear, bicubic) the
    source of unit ``o`` is ``o/scale``: PyTorch's ``scale = (m-1)/(n-1)`` for ``n`` units to ``m``, and unit
    0 sits on input unit 0. A non-integer scale is read as the nearest fraction with a denominator of at
    most 16 (1.5 = 3/2).

    >>> rf_upsample(rf_input(2), 2)
    RF(size=(1, 1), jump=(0.5, 0.5), start=(-0.25, -0.25))
    >>> rf_upsample(rf_input(1), 2, "bilinear").size, rf_upsample(rf_input(1), 2, "bicubic").size
    ((2,), (4,))
    """
    scales = (float(scale),) * rf.ndim if isinstance(scale, (int, float)) else tuple(float(v) for v in scale)
    if len(scales) != rf.ndim or not all(is_finite_positive(v) for v in scales):
        raise ValueError(
            f"scale must be a positive number or one per axis ({', '.join(axis_names(rf.ndim))}); "
            f"received scale={scale!r}. Use e.g. scale=2."
        )
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}; received mode={mode!r}.")
    follow, centred = _MODES[mode], not (align_corners and _MODES[mode] in ("linear", "cubic"))
    supports, jump, start = [], [], []
    for sup, j, st, sc in zip(rf.supports(), rf.jump, rf.start, scales):
        # size: nearest copies one source unit, (bi)linear mixes two neighbours, bicubic four
        supports.append(_support.upsample(sup, Fraction(sc).limit_denominator(16), follow, not centred))
        jump.append(j / sc)  # jump_out = jump_in / scale
        # centre of output 0 = (0 + 0.5)/scale - 0.5 (align_corners: input unit 0)
        start.append(st + (0.5 / sc - 0.5) * j if centred else st)
    return _make(supports, jump, start)


def rf_whole_map(rf: RF, n: IntOrTuple) -> RF:
    """Receptive field of the one unit of a layer that combines all ``n`` units of each axis (fc, global pooling).

    A window as wide as the map sliding by one unit: ``j_out = j_in``, ``start_out = start_in + (n-1)/2 *
    j_in``; ``size`` is what the one unit on the map sees, the span of units ``0 .. n-1``. After upsampling
    other phases of the window would see more, but no such unit exists on this map (the pattern behind
    ``size`` keeps them for a later layer's padding, which counts as grid positions). Nor do the units an
    upsampling reads beyond the map's borders on the infinite grid: PyTorch clamps its source indices to
    the map, so they are left out (``AxisSupport.trim``: bilinear x2 after a 3x3 conv on 6 pixels, 6 not 8;
    where the border's phase is not known a safe over-count stays).

    >>> rf_whole_map(rf_conv(rf_input(1), 3, p=1), 4)
    RF(size=(6,), jump=(1.0,), start=(1.5,))
    >>> rf_whole_map(rf_upsample(rf_conv(rf_input(1), 3, p=1), 2), 8).size  # units 0..7 see pixels -1..4
    (6,)
    >>> rf_whole_map(rf_upsample(rf_conv(rf_input(1), 3), 2, "bicubic"), 8).size  # not units -2 .. 5
    (6,)
    """
    ns = to_tuple(n, rf.ndim, "map size", minimum=1)
    slid = rf_conv(rf, ns)
    # the span of units 0 .. n-1, less what a clamped resampling never read at the map's borders
    spans = [(sup.unit(0), sup.trim) for sup in slid.supports()]
    size = tuple(0 if span is None else max(1, span[1] - span[0] + 1 - sum(trim)) for span, trim in spans)
    return RF(size=size, jump=slid.jump, start=slid.start, support=slid.support)
