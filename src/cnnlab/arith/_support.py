"""Exact receptive-field sizes once upsampling has made the jump fractional (one spatial axis).

The plain recurrence ``size_out = size_in + (k_eff - 1) * jump_in`` is exact while every jump is a
whole number of pixels. After a transposed convolution or an upsampling layer, output units no
longer sit on a regular grid of input pixels: some see one pixel more than others, a stride-2
transposed conv with a 1-tap kernel leaves units that see nothing at all, and rounding errors of the
continuous formula accumulate (too large or too small) through later layers.

This module tracks the dependence exactly on an infinite grid (no borders). The pattern repeats:
output unit ``u = q*period + r`` depends on input pixels ``[lo_r + q*shift, hi_r + q*shift]``, so a
tuple of ``period`` spans (``None`` for a unit that no input pixel reaches) describes a whole layer.
Only the first and last pixel of each span matter: the union of sets has the min of the mins and the
max of the maxes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

Span = tuple[int, int] | None

# the longest repeating pattern followed exactly: the product of the transposed-conv strides and upsampling
# factors so far (32 in FCN-32s, 16 after four x2 decoders). Each unit of a period is walked, so a stride of
# 10^8 would take minutes and gigabytes; past this bound cnnlab says so instead (about a second of work)
MAX_PERIOD = 1 << 16


class PeriodTooLong(ValueError):
    """The exact pattern of a receptive field would repeat only every more than :data:`MAX_PERIOD` units."""


@dataclass(frozen=True)
class AxisSupport:
    """Input span of each unit of one period.

    Unit ``q*period + r`` sees the input pixels ``spans[r]`` shifted by ``q*shift``.
    """

    period: int
    shift: int
    spans: tuple[Span, ...]
    # pixels that the union of a whole map's units (fc, global pooling) over-counts at its left and right
    # border: PyTorch clamps a resampling's source index to the map, so the units beyond it that the
    # infinite grid reads at the border are never read (0 where that is not known: a safe over-count)
    trim: tuple[int, int] = (0, 0)

    def unit(self, u: int) -> Span:
        """The input span of unit ``u`` (any integer, borders ignored)."""
        q, r = divmod(u, self.period)
        span = self.spans[r]
        return None if span is None else (span[0] + q * self.shift, span[1] + q * self.shift)

    def widest(self) -> int:
        """Most input pixels any unit spans (0 when no unit is reached by any input pixel)."""
        return max((hi - lo + 1 for lo, hi in (s for s in self.spans if s is not None)), default=0)


def identity() -> AxisSupport:
    """The input: pixel ``i`` sees itself."""
    return AxisSupport(period=1, shift=1, spans=((0, 0),))


def from_recurrence(size: int, jump: float, start: float) -> AxisSupport:
    """Support of a hand-made RF: unit ``u`` sees ``size`` pixels centred at ``start + u*jump``.

    A fractional jump is read as the nearest fraction with a denominator of at most 64; the result
    is then the continuous approximation, since a hand-made RF does not say which units see more.
    """
    frac = Fraction(jump).limit_denominator(64)
    if frac <= 0 or size < 0:
        raise ValueError(f"an RF needs jump > 0 and size >= 0; received size={size}, jump={jump}.")
    spans: list[Span] = []
    for r in range(frac.denominator):
        lo = math.floor(start + r * frac - Fraction(size - 1, 2) + Fraction(1, 10**9))
        spans.append((lo, lo + size - 1) if size > 0 else None)
    return AxisSupport(period=frac.denominator, shift=frac.numerator, spans=tuple(spans))


# the units one output unit reads, as an arithmetic progression: first, step, count
Progression = tuple[int, int, int]


def _union(sup: AxisSupport, units: Progression) -> Span:
    """Union of the spans of the units ``first + i*step`` (``i < count``), in O(period) steps.

    Unit ``u + period`` sees the span of ``u`` shifted right by ``shift > 0``, so within each residue
    class modulo ``period`` the first unit of the progression has the smallest span start and the last
    one the largest end. The residues repeat every ``period / gcd(period, step)`` units, so the first and
    last that many units decide the union, however long the progression (a kernel as large as the
    map, as fc and global pooling have, would otherwise be walked tap by tap).
    """
    first, step, count = units
    if count <= 0:
        return None
    if step < 0:  # walk it from the other end: same units, ascending
        first, step = first + (count - 1) * step, -step
    cycle = min(count, sup.period // math.gcd(sup.period, step) if step else 1)
    ends = set(range(cycle)) | set(range(count - cycle, count))
    spans = [s for s in (sup.unit(first + i * step) for i in sorted(ends)) if s is not None]
    if not spans:
        return None
    return (min(s[0] for s in spans), max(s[1] for s in spans))


def _through(sup: AxisSupport, period: int, shift: int, deps: Callable[[int], Progression]) -> AxisSupport:
    if period > MAX_PERIOD:
        raise PeriodTooLong(
            f"the exact receptive field here repeats only every {period:,} units (the product of the strides "
            f"of transposed convolutions and the upsampling factors so far); cnnlab follows patterns of at most "
            f"{MAX_PERIOD:,} units"
        )
    return AxisSupport(period, shift, tuple(_union(sup, deps(o)) for o in range(period)))


def conv(sup: AxisSupport, k: int, s: int, p_left: int, d: int, p_right: int | None = None) -> AxisSupport:
    """Through a convolution/pooling: unit ``o`` reads units ``o*s - p + j*d`` for ``j < k``.

    The border ``trim`` carries on where the map's units read the input's first (no left padding) or last
    (stride 1, no right padding) unit; padding positions are grid positions, read on the infinite grid."""
    period = sup.period // math.gcd(sup.period, s)
    shift = sup.shift * period * s // sup.period
    out = _through(sup, period, shift, lambda o: (o * s - p_left, d, k))
    trim = (sup.trim[0] if p_left == 0 else 0, sup.trim[1] if s == 1 and p_right == 0 else 0)
    return replace(out, trim=trim)


def conv_transpose(sup: AxisSupport, k: int, s: int, p: int, d: int) -> AxisSupport:
    """Through a transposed convolution: output ``o`` gets input ``i`` when ``o = i*s + j*d - p``."""

    def deps(o: int) -> Progression:
        # taps j < k with j*d = o + p (mod s): none unless gcd(d, s) divides o + p, else every s/g-th tap
        # from the smallest solution j0, reading inputs (o + p - j*d)/s, which fall by d/g per tap
        g = math.gcd(d, s)
        if (o + p) % g:
            return (0, 1, 0)
        m = s // g
        j0 = (o + p) // g * pow(d // g, -1, m) % m if m > 1 else 0
        count = max(0, -(-(k - j0) // m))
        return ((o + p - j0 * d) // s, -(d // g), count)

    return _through(sup, sup.period * s, sup.shift, deps)


# how many neighbours of the source position each upsampling mode mixes
TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "cubic": 4}


def upsample(sup: AxisSupport, scale: Fraction, mode: str | bool, align_corners: bool = False) -> AxisSupport:
    """Through upsampling by ``scale`` (output units per input unit), as PyTorch computes it.

    ``nearest`` copies unit ``floor(o/scale)``, ``nearest-exact`` unit ``floor((o + 1/2)/scale)``;
    ``linear`` mixes the two neighbours of the source position ``(o + 1/2)/scale - 1/2`` (``o/scale`` with
    ``align_corners``), ``cubic`` four (two on each side). A source position on a whole unit reads that
    unit alone (every other weight is exactly 0). Borders are ignored (PyTorch clamps there), except in
    ``trim``, which a whole map's union subtracts.
    ``mode`` True/False is the older linear flag: linear/nearest.
    """
    a, b = scale.numerator, scale.denominator
    if isinstance(mode, bool):
        mode = "linear" if mode else "nearest"
    taps = TAPS[mode]

    def deps(o: int) -> Progression:
        if mode == "nearest":
            return (math.floor(Fraction(o * b, a)), 1, 1)
        if mode == "nearest-exact":
            return (math.floor((o + Fraction(1, 2)) * b / a), 1, 1)
        src = Fraction(o * b, a) if align_corners else (o + Fraction(1, 2)) * b / a - Fraction(1, 2)
        lo = math.floor(src)
        return (lo, 1, 1) if src == lo else (lo - (taps // 2 - 1), 1, taps)

    out = _through(sup, sup.period * a, sup.shift * b, deps)
    # PyTorch clamps the source indices to the map: the units the infinite grid reads left of unit 0 (and,
    # by symmetry when the map is scaled by a whole factor or with align_corners, right of the last) are
    # never read; the input's own trim holds where the border units read the input's border unit
    first = min(deps(o)[0] for o in range(out.period))
    over = max(0, -first)
    left = sup.trim[0] + _beyond(sup, over, left=True) if first <= 0 else 0
    right = sup.trim[1] + _beyond(sup, over, left=False) if align_corners or (b == 1 and a >= 1) else 0
    return replace(out, trim=(left, right))


def _beyond(sup: AxisSupport, over: int, left: bool) -> int:
    """Pixels the ``over`` units beyond the map's left border (or, at its unknown phase, the fewest beyond
    its right border) add to the border unit's span; 0 when a unit there sees nothing."""
    if over == 0:
        return 0
    gains = []
    for r in range(1 if left else sup.period):
        inside, outside = (sup.unit(r), sup.unit(r - over)) if left else (sup.unit(r), sup.unit(r + over))
        if inside is None or outside is None:
            return 0
        gains.append(max(0, inside[0] - outside[0]) if left else max(0, outside[1] - inside[1]))
    return min(gains)
