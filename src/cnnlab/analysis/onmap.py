"""Receptive fields of the real units of one finite map axis, for the path after an uneven adaptive pool.

PyTorch's adaptive windows ``[floor(i*n/m), ceil((i+1)*n/m))`` have no period when ``m`` does not
divide ``n`` (1 -> 7 replicates one unit, 11 -> 4 mixes windows of 3 and 4), so the grid after such a
pool is not the textbook infinite one: a padding position beyond the pooled map is zero and sees no
pixel. From the pool on, each real unit of an axis keeps the exact input span it sees (``Spans``),
and every later op unions the spans of the real units it reads, so a read that skips a unit (stride,
dilation) or lands on padding adds nothing. The pool's input units keep their whole textbook fields
(padding before the pool counts as everywhere in cnnlab: sizes may exceed the input, never cut).

>>> after = adaptive(((-1, 1), (0, 2), (1, 3)), 7)  # three units of a 3-wide field, pooled 3 -> 7
>>> after[0], after[3], widest(window(after, k=3, s=1, p_left=1, d=1, n_out=7))
((-1, 1), (0, 2), 5)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

from cnnlab.arith._support import AxisSupport, Span

Spans = tuple[Span, ...]  # per real unit of one axis: (first, last) input pixel it sees, None for none


def union(spans: Iterable[Span]) -> Span:
    """The pixels several units see together: first of the firsts, last of the lasts."""
    real = [sp for sp in spans if sp is not None]
    if not real:
        return None
    return (min(sp[0] for sp in real), max(sp[1] for sp in real))


def widest(spans: Spans) -> int:
    """Most pixels any real unit sees (0 when none sees any)."""
    return max((hi - lo + 1 for lo, hi in (sp for sp in spans if sp is not None)), default=0)


def from_support(sup: AxisSupport, n: int) -> Spans:
    """Units ``0 .. n-1`` of an infinite-grid pattern: each with its own textbook span."""
    return tuple(sup.unit(u) for u in range(n))


def _read(spans: Spans, units: Iterable[int]) -> Span:
    """The union over ``units`` that lie on the map; an index off the map is padding and sees nothing."""
    return union(spans[u] for u in units if 0 <= u < len(spans))


def adaptive(spans: Spans, n_out: int) -> Spans:
    """Adaptive pooling to ``n_out``: unit ``o`` reads ``[floor(o*n/m), ceil((o+1)*n/m))``."""
    n = len(spans)
    return tuple(_read(spans, range((o * n) // n_out, -(-((o + 1) * n) // n_out))) for o in range(n_out))


def window(spans: Spans, k: int, s: int, p_left: int, d: int, n_out: int) -> Spans:
    """Convolution or pooling: unit ``o`` reads ``o*s - p_left + j*d`` for ``j < k``."""
    return tuple(_read(spans, (o * s - p_left + j * d for j in range(k))) for o in range(n_out))


def transposed(spans: Spans, k: int, s: int, p: int, d: int, n_out: int) -> Spans:
    """Transposed convolution: input ``i`` reaches output ``o = i*s + j*d - p`` for ``j < k``."""
    out: list[Span] = [None] * n_out
    for i, sp in enumerate(spans):
        for j in range(k):
            o = i * s + j * d - p
            if sp is not None and 0 <= o < n_out:
                out[o] = union((out[o], sp))
    return tuple(out)


def upsample(spans: Spans, scale: float, linear: bool, n_out: int) -> Spans:
    """Nearest (``floor(o/scale)``) or (bi)linear (the neighbours of ``(o + 1/2)/scale - 1/2``) upsampling.

    The scale is read as arith's infinite-grid rule reads it (nearest fraction, denominator <= 16).
    """
    frac = Fraction(scale).limit_denominator(16)
    out = []
    for o in range(n_out):
        src = (o + Fraction(1, 2)) / frac - Fraction(1, 2)
        if not linear:
            units = [math.floor(o / frac)]
        else:  # a weight of exactly 0 on the right neighbour means it does not influence the unit
            units = [math.floor(src)] + ([math.floor(src) + 1] if src != math.floor(src) else [])
        out.append(_read(spans, units))
    return tuple(out)


def move(spans: Spans, offset: int, step: int, n_out: int) -> Spans:
    """Padding (negative ``offset``) or cropping: unit ``o`` is unit ``o*step + offset``."""
    return tuple(_read(spans, (o * step + offset,)) for o in range(n_out))
