"""Receptive fields of the real units of one finite map axis, for the path after an uneven adaptive pool.

PyTorch's adaptive windows ``[floor(i*n/m), ceil((i+1)*n/m))`` have no period when ``m`` does not
divide ``n`` (1 -> 7 replicates one unit, 11 -> 4 mixes windows of 3 and 4), so the grid after such a
pool is not the textbook infinite one: a padding position beyond the pooled map is zero and sees no
pixel. From the pool on, each real unit of an axis keeps the exact input span it sees (``Spans``),
and every later op unions the spans of the real units it reads, so a read that skips a unit (stride,
dilation) or lands on zero padding adds nothing, and one on reflect, replicate or circular padding adds the
unit copied there (:func:`source`). The pool's input units keep their whole textbook fields
(padding before the pool counts as everywhere in cnnlab: sizes may exceed the input, never cut).

>>> after = adaptive(((-1, 1), (0, 2), (1, 3)), 7)  # three units of a 3-wide field, pooled 3 -> 7
>>> after[0], after[3], widest(window(after, k=3, s=1, p_left=1, d=1, n_out=7))
((-1, 1), (0, 2), 5)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

from cnnlab.arith._support import AxisSupport, Span

Spans = tuple[Span, ...]  # per real unit of one axis: (first, last) input pixel it sees, None for none


def union(spans: Iterable[Span]) -> Span:
    """The pixels several units see together: first of the firsts, last of the lasts."""
    first = last = None
    for sp in spans:  # a plain loop: this runs for every unit of every part at every op
        if sp is None:
            continue
        if first is None or last is None:
            first, last = sp
        else:
            first, last = min(first, sp[0]), max(last, sp[1])
    return None if first is None or last is None else (first, last)


def widest(spans: Spans) -> int:
    """Most pixels any real unit sees (0 when none sees any)."""
    return max((hi - lo + 1 for lo, hi in (sp for sp in spans if sp is not None)), default=0)


def from_support(sup: AxisSupport, n: int) -> Spans:
    """Units ``0 .. n-1`` of an infinite-grid pattern: each with its own textbook span."""
    return tuple(sup.unit(u) for u in range(n))


def source(u: int, n: int, border: str = "zeros") -> int | None:
    """The unit of an ``n``-unit axis that index ``u`` reads: itself on the map; off it, None for zero
    padding, else the unit PyTorch's ``reflect`` (``-1`` is unit 1), ``replicate`` (unit 0) or ``circular``
    (unit ``n-1``) padding copies there.

    >>> [source(u, 4, mode) for mode in ("zeros", "reflect", "replicate", "circular") for u in (-2, 4)]
    [None, None, 2, 2, 0, 3, 2, 0]
    """
    if 0 <= u < n or border == "zeros":
        return u if 0 <= u < n else None
    if border == "replicate":
        return min(max(u, 0), n - 1)
    if border == "circular":
        return u % n
    period = 2 * (n - 1)  # reflect: ... 2 1 | 0 1 2 3 | 2 1 0 ...
    r = u % period if period else 0
    return r if r < n else period - r


def _read(spans: Spans, units: Iterable[int], border: str = "zeros") -> Span:
    """The union over the units that ``units`` read on the map; under zero padding an index off the map
    sees nothing, under reflect/replicate/circular padding it sees the unit copied there."""
    n = len(spans)
    return union(spans[v] for v in (source(u, n, border) for u in units) if v is not None)


def adaptive(spans: Spans, n_out: int) -> Spans:
    """Adaptive pooling to ``n_out``: unit ``o`` reads ``[floor(o*n/m), ceil((o+1)*n/m))``."""
    n = len(spans)
    return tuple(_read(spans, range((o * n) // n_out, -(-((o + 1) * n) // n_out))) for o in range(n_out))


def window(spans: Spans, k: int, s: int, p_left: int, d: int, n_out: int, border: str = "zeros") -> Spans:
    """Convolution or pooling: unit ``o`` reads ``o*s - p_left + j*d`` for ``j < k`` (padding: ``border``)."""
    if border == "zeros" and d == 1:  # a run of units; off the map nothing
        return tuple(union(spans[max(0, o * s - p_left) : max(0, o * s - p_left + k)]) for o in range(n_out))
    return tuple(_read(spans, (o * s - p_left + j * d for j in range(k)), border) for o in range(n_out))


def transposed(spans: Spans, k: int, s: int, p: int, d: int, n_out: int) -> Spans:
    """Transposed convolution: input ``i`` reaches output ``o = i*s + j*d - p`` for ``j < k``."""
    out: list[Span] = [None] * n_out
    for i, sp in enumerate(spans):
        for j in range(k):
            o = i * s + j * d - p
            if sp is not None and 0 <= o < n_out:
                out[o] = union((out[o], sp))
    return tuple(out)


def upsample(spans: Spans, scale: float, mode: str, align_corners: bool, n_out: int) -> Spans:
    """Upsampling of ``n`` units to ``n_out`` as PyTorch computes it (``scale``: output units per input unit).

    ``nearest`` reads ``floor(o/scale)``, ``nearest-exact`` ``floor((o + 1/2)/scale)``; ``bilinear`` the
    neighbours of ``max(0, (o + 1/2)/scale - 1/2)``, ``bicubic`` two on each side of ``(o + 1/2)/scale - 1/2``
    (indices clamped to the map); with ``align_corners`` the source is ``o * (n-1)/(n_out-1)``. A source on
    a whole unit reads that unit alone (every other weight is exactly 0). The scale is exact when it is
    ``n_out/n``, else (a ``scale_factor`` that the size rounds) the nearest fraction with a denominator
    of at most 1000.

    >>> units = ((0, 0), (1, 1), (2, 2))
    >>> upsample(units, 2, "bilinear", False, 6)[1], upsample(units, 2, "bicubic", False, 6)[1]
    ((0, 1), (0, 2))
    """
    n = len(spans)
    frac = Fraction(n_out, n) if math.isclose(scale, n_out / n) else Fraction(scale).limit_denominator(1000)
    out = []
    for o in range(n_out):
        if mode in ("nearest", "nearest-exact"):
            src = (o + Fraction(1, 2) if mode == "nearest-exact" else Fraction(o)) / frac
            out.append(_read(spans, [min(math.floor(src), n - 1)]))
            continue
        if align_corners:
            src = Fraction(o * (n - 1), n_out - 1) if n_out > 1 else Fraction(0)
        else:
            src = (o + Fraction(1, 2)) / frac - Fraction(1, 2)
            src = max(src, Fraction(0)) if mode == "bilinear" else src  # bicubic does not clamp the source
        lo = math.floor(src)
        taps = [lo] if src == lo else [lo, lo + 1] if mode == "bilinear" else [lo - 1, lo, lo + 1, lo + 2]
        out.append(_read(spans, taps, "replicate"))  # PyTorch clamps the indices to the map
    return tuple(out)


def move(spans: Spans, offset: int, step: int, n_out: int, border: str = "zeros") -> Spans:
    """Padding (negative ``offset``) or cropping: unit ``o`` is unit ``o*step + offset`` (padding: ``border``)."""
    if border == "zeros":  # a plain copy, off the map nothing
        n = len(spans)
        return tuple(spans[u] if 0 <= u < n else None for u in range(offset, offset + step * n_out, step))
    return tuple(_read(spans, (o * step + offset,), border) for o in range(n_out))


# --- maps joined from pieces (a cat along a spatial axis) ------------------------------------------------

Parts = tuple[Spans, ...]  # one axis of a joined map: per part (piece), its units' spans, None off the part


def _alive(axes: Sequence[Parts], k: int) -> bool:
    """Part ``k`` still covers a unit: it reaches one along every axis (its units are that product)."""
    return all(any(sp is not None for sp in parts[k]) for parts in axes)


def widest_seen(axes: Sequence[Parts]) -> tuple[int, ...]:
    """Per axis, most pixels any real unit sees when the units come from several parts.

    ``axes[a][k]`` holds part ``k``'s spans along axis ``a``. A unit sees the parts that reach each of its
    coordinates, and along each axis the union of their spans there: a window that straddles a seam sees
    both pieces, a unit on one side only its own.
    """
    count = len(axes[0])
    reach = [
        {frozenset(k for k in range(count) if parts[k][u] is not None) for u in range(len(parts[0]))} for parts in axes
    ]
    sizes = []
    for a, parts in enumerate(axes):
        seen = {frozenset(range(count))}  # the sets of parts some unit sees, given its other coordinates
        for b, sets in enumerate(reach):
            if b != a:
                seen = {s & t for s in seen for t in sets}
        widest_sets = [s for s in seen if not any(s < t for t in seen)]  # a subset sees no more
        sizes.append(
            max(widest(tuple(union(parts[k][u] for k in s) for u in range(len(parts[0])))) for s in widest_sets)
        )
    return tuple(sizes)


def narrowest(axes: Sequence[Parts]) -> tuple[int, ...]:
    """Per axis, the widest unit of the narrowest part that still covers a unit (the path through one piece)."""
    count = len(axes[0])
    alive = [k for k in range(count) if _alive(axes, k)] or list(range(count))
    return tuple(min(widest(parts[k]) for k in alive) for parts in axes)


def _within(inner: Spans, outer: Spans) -> bool:
    """Every unit ``inner`` reaches, ``outer`` reaches too, with a span that holds ``inner``'s."""
    return all(i is None or (o is not None and o[0] <= i[0] and i[1] <= o[1]) for i, o in zip(inner, outer))


def merge(axes: Sequence[Parts]) -> tuple[Parts, ...]:
    """The parts of a merge (add, mul) of joined maps, exactly and few.

    Parts that cover the same units become one (a unit sees all of them or none: the union per unit); a
    part inside another along every axis (a residual block's shortcut inside its body) adds nothing to any
    unit, now or after any later op, and is dropped.
    """
    groups: dict[tuple[tuple[bool, ...], ...], list[int]] = {}
    for k in [k for k in range(len(axes[0])) if _alive(axes, k)] or [0]:
        groups.setdefault(tuple(tuple(sp is not None for sp in parts[k]) for parts in axes), []).append(k)
    merged = [
        tuple(tuple(union(parts[k][u] for k in ks) for u in range(len(parts[0]))) for parts in axes)
        for ks in groups.values()
    ]  # per part: its spans along every axis
    kept = [
        part
        for i, part in enumerate(merged)
        if not any(j != i and all(_within(p, q) for p, q in zip(part, other)) for j, other in enumerate(merged))
    ]
    return tuple(tuple(part[a] for part in kept) for a in range(len(axes)))


def keep_narrowest(axes: Sequence[Parts]) -> tuple[Parts, ...]:
    """The parts that are the narrowest along some axis: a merge follows its narrowest input, per axis."""
    count = len(axes[0])
    alive = [k for k in range(count) if _alive(axes, k)] or list(range(count))
    kept = sorted({min(alive, key=lambda k: widest(parts[k])) for parts in axes})
    return tuple(tuple(parts[k] for k in kept) for parts in axes)


def _reach(axes: Sequence[Parts], k: int) -> tuple[tuple[bool, ...], ...]:
    """Which units part ``k`` reaches, per axis."""
    return tuple(tuple(sp is not None for sp in parts[k]) for parts in axes)


def compact(axes: Sequence[Parts], widest_path: bool) -> tuple[Parts, ...]:
    """The same parts, exactly and few: parts that reach no unit are dropped (a crop left them behind).

    For the widest path (``hi``) parts that reach the same units become one: a unit sees all of them or
    none, and every later op unions spans unit by unit, so their union per unit is exact from here on. For
    the narrowest (``lo``) a part that holds another one with the same reach along every axis can never be
    the narrower of the two, now or after any later op, and is dropped.

    >>> a, b, dead = ((0, 0), None), ((0, 2), None), (None, None)
    >>> compact([(a, b, dead)], True)[0], compact([(a, b, dead)], False)[0]  # one axis
    ((((0, 2), None),), (((0, 0), None),))
    """
    count = len(axes[0])
    groups: dict[tuple[tuple[bool, ...], ...], list[int]] = {}
    for k in [k for k in range(count) if _alive(axes, k)] or [0]:
        groups.setdefault(_reach(axes, k), []).append(k)
    if widest_path:
        kept = [
            tuple(
                parts[ks[0]] if len(ks) == 1 else tuple(union(parts[k][u] for k in ks) for u in range(len(parts[0])))
                for parts in axes
            )
            for ks in groups.values()
        ]
    else:
        kept = []
        for ks in groups.values():
            if len(ks) == 1:
                kept.append(tuple(parts[ks[0]] for parts in axes))
                continue
            members = list(dict.fromkeys(tuple(parts[k] for parts in axes) for k in ks))  # identical parts once
            kept += [
                m
                for i, m in enumerate(members)
                if not any(j != i and all(_within(p, q) for p, q in zip(o, m)) for j, o in enumerate(members))
            ]
    return tuple(tuple(part[a] for part in kept) for a in range(len(axes)))
