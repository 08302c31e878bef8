"""Receptive-field state on a finite map: the exact spans of the real units, where the textbook infinite
grid no longer holds.

An uneven adaptive pool (:mod:`cnnlab.analysis.onmap`), circular padding (:func:`wraps`), a merge with an
input broadcast from one unit, or a ``cat`` along a spatial axis (:mod:`cnnlab.analysis.seams`) puts an axis
on the finite map: ``RFState.on_map`` then holds, per part, the span each real unit sees. These helpers
carry that state for :mod:`cnnlab.analysis.receptive`: the units' spans (:func:`unit_spans`), how a grid op
moves them (:func:`spans_through`), merges (:func:`merge_maps`), spatial cats (:func:`join_state`) and the
sizes read from the spans (:func:`sizes_from_map`).
"""

from __future__ import annotations

from cnnlab.analysis import geometry as K
from cnnlab.analysis import onmap, seams
from cnnlab.analysis.onmap import Parts, Spans
from cnnlab.analysis.rfstate import OnMap, Place, RFState, clean_axis, edit_axes
from cnnlab.arith import RF, _support


def unit_spans(state: RFState, a: int, n: int) -> tuple[Parts, Parts]:
    """The spans of units ``0 .. n-1`` along axis ``a`` per part, for hi and lo (one span everywhere once combined)."""
    both = state.on_map[a]
    if both is not None:
        return tuple(tuple(sp * n if len(sp) == 1 and n > 1 else sp for sp in parts) for parts in both)  # type: ignore[return-value]
    sups = state.hi.supports()[a], state.lo.supports()[a]
    if broadcasts(state.places[a]):  # combined, or one unit broadcast: unit 0 holds what every unit sees
        return ((sups[0].unit(0),) * n,), ((sups[1].unit(0),) * n,)
    return (onmap.from_support(sups[0], n),), (onmap.from_support(sups[1], n),)


def broadcasts(place: Place) -> bool:
    """The axis has one unit (or none, combined away): every unit of a merge with it sees that unit's field."""
    return place is None or place[2] == 1


def uniform(state: RFState, a: int) -> bool:
    """Every unit along axis ``a`` sees the same span on the finite map (a one-unit map resampled to full
    size, ASPP's image-pooling branch): like a broadcast input, it says nothing about where units sit."""
    both = state.on_map[a]
    if both is None or any(len(parts) != 1 for parts in both):
        return False
    return all(len(set(parts[0])) == 1 for parts in both)


def _covers(place: Place, n: int) -> bool:
    """An input reaches every one of the merge's ``n`` units along an axis: it has them, or it has one unit
    that broadcasts to all of them (an SE block's ``x * pool(x)``)."""
    return broadcasts(place) or place[2] == n  # type: ignore[index]


def merge_maps(states: list[RFState], places: tuple[Place, ...], nd: int) -> tuple[OnMap, ...]:
    """A merge on a finite map: ``hi``, each real unit sees what it sees in any input; ``lo``, the narrowest
    input alone, per axis (inputs with the output's units, or broadcast from one)."""
    sizes = [1 if p is None else p[2] for p in places]
    ins = [s for s in states if all(_covers(p, n) for p, n in zip(s.places, sizes))]
    joined = any(len(parts) > 1 for s in states for both in s.on_map if both is not None for parts in both)
    if not joined or not ins:
        return tuple(_merge_on_map(states, sizes[a], a) for a in range(nd))
    # after a spatial cat: every input's parts, those covering the same units as one (hi); the parts that
    # are the narrowest along some axis (lo)
    spans = [[unit_spans(s, a, n) for a, n in enumerate(sizes)] for s in ins]
    hi = onmap.merge([tuple(part for axes in spans for part in axes[a][0]) for a in range(nd)])
    lo = onmap.keep_narrowest([tuple(part for axes in spans for part in axes[a][1]) for a in range(nd)])
    return tuple((hi[a], lo[a]) for a in range(nd))


def _merge_on_map(states: list[RFState], n: int, a: int) -> OnMap:
    """One axis of a merge of one-part maps (``n`` units out).

    An input with one unit there (or none, combined away) broadcasts it: every unit sees that one unit's
    field, whatever its place, which no infinite-grid pattern holds, so the axis goes on the finite map."""
    broadcast = n > 1 and any(broadcasts(s.places[a]) for s in states)
    # inputs whose units sit on different jumps (an FPN's lateral and its unevenly upsampled top-down map)
    # have no common infinite-grid pattern: their union is taken unit by unit
    jumps = {round(s.hi.jump[a], 6) for s in states if not broadcasts(s.places[a])}
    if not broadcast and len(jumps) < 2 and all(s.on_map[a] is None for s in states):
        return None
    ins = [unit_spans(s, a, n) for s in states if _covers(s.places[a], n)]
    if not ins:  # no input has the output's units along this axis: keep the infinite-grid sizes
        return None
    hi = tuple(onmap.union(spans[0][0][u] for spans in ins) for u in range(n))
    return (hi,), min((spans[1] for spans in ins), key=lambda parts: onmap.widest(parts[0]))


def wraps(g: K.Geometry, i: int) -> bool:
    """Circular padding along axis ``i``: a unit at the border reads the opposite edge, which no infinite
    grid has, so the axis is followed on the finite map from here on."""
    return g.kind in (K.CONV, K.PAD) and g.pad_mode == "circular" and g.p[i] != (0, 0)


def spans_through(g: K.Geometry, i: int, spans: Spans, m: int) -> Spans:
    """The real units' spans after grid op ``g`` along its axis ``i`` (``m`` units out)."""
    if g.kind in (K.CONV, K.POOL):
        return onmap.window(spans, g.k[i], g.s[i], g.p[i][0], g.d[i], m, g.pad_mode)
    if g.kind == K.CONV_T:
        return onmap.transposed(spans, g.k[i], g.s[i], g.p[i][0], g.d[i], m)
    if g.kind == K.UPSAMPLE:
        return onmap.upsample(spans, g.scale[i], g.mode, g.align_corners, m)
    if g.kind == K.PAD:
        return onmap.move(spans, -g.p[i][0], 1, m, g.pad_mode)
    if g.kind == K.CROP:
        return onmap.move(spans, g.offset[i], g.s[i], m)
    return onmap.adaptive(spans, m)


# most parts a joined map keeps after :func:`onmap.compact`; beyond it the fields are not followed
MAX_PARTS = 256


class TooManyParts(Exception):
    """A joined map with more than :data:`MAX_PARTS` parts (``count``): its fields are not followed."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


class AxesDiffer(Exception):
    """A cat along a tensor axis that holds different spatial axes in its inputs (Coordinate Attention's cat of
    the H-pooled map with the permuted W-pooled one), or one of them flattened with others: not followed."""


def compact_state(state: RFState) -> RFState:
    """The same state with its parts compacted (:func:`onmap.compact`): dead parts dropped, ``hi``'s parts
    with the same reach merged, ``lo``'s dominated parts dropped. Repeated spatial cats would otherwise
    double the parts at every cat."""
    axes = [a for a, both in enumerate(state.on_map) if both is not None]
    if not axes or all(len(state.on_map[a][0]) == 1 and len(state.on_map[a][1]) == 1 for a in axes):  # type: ignore[index]
        return state
    maps = list(state.on_map)
    packed = [onmap.compact([maps[a][w] for a in axes], w == 0) for w in (0, 1)]  # type: ignore[index]
    for i, a in enumerate(axes):
        maps[a] = (packed[0][i], packed[1][i])
    return RFState(state.hi, state.lo, state.places, tuple(maps))


def part_count(state: RFState) -> int:
    """How many parts the state's joined map holds (1 without a spatial cat)."""
    return max((len(parts) for both in state.on_map if both is not None for parts in both), default=1)


def sizes_from_map(state: RFState) -> RFState:
    """Sizes along finite-map axes: the widest real unit (the infinite-grid pattern does not apply there);
    after a spatial cat, of all units for ``hi`` and of the narrowest piece's for ``lo``."""
    if all(both is None for both in state.on_map):
        return state

    def fix(rf: RF, which: int) -> RF:
        size = [s if both is None else max(1, onmap.widest(both[which][0])) for s, both in zip(rf.size, state.on_map)]
        axes = [both[which] for both in state.on_map if both is not None]
        if len(axes) == len(size) and len(axes[0]) > 1:  # parts: every axis is on the map
            size = [max(1, v) for v in (onmap.widest_seen(axes) if which == 0 else onmap.narrowest(axes))]
        return RF(tuple(size), rf.jump, rf.start, rf.supports())

    return RFState(fix(state.hi, 0), fix(state.lo, 1), state.places, state.on_map)


def join_state(
    pieces: list[tuple[RFState | None, int]], shapes: list[tuple[int, ...]], dim: int, nd: int
) -> RFState | None:
    """A cat along tensor axis ``dim`` (``pieces``: each input's state, None for a constant, and its length
    there) when ``dim`` holds a spatial axis alone (:mod:`cnnlab.analysis.seams`); None for channels.
    Raises :class:`TooManyParts` when the joined map would hold more than :data:`MAX_PARTS` parts, and
    :class:`AxesDiffer` when the inputs do not hold the same spatial axes in the same places."""
    real = [(s, shape) for (s, _), shape in zip(pieces, shapes) if s is not None]
    if not real:
        return None
    ref = real[0][0]
    a = next((b for b, p in enumerate(ref.places) if p is not None and p[0] == dim), None)
    if a is None:  # a cat of channels, unless another input holds a spatial axis there
        if any(p is not None and p[0] == dim for s, _ in real for p in s.places):
            raise AxesDiffer
        return None
    if any(not clean_axis(s.places[a], shape) for s, shape in real):
        raise AxesDiffer
    if any(s.places[b] != ref.places[b] for s, _ in real for b in range(nd) if b != a):
        raise AxesDiffer  # the pieces hold their other axes differently
    count = sum(part_count(s) for s, _ in real)  # pieces sit apart along the joined axis: no part merges
    if count > MAX_PARTS:
        raise TooManyParts(count)
    spans = [
        (None if s is None else [unit_spans(s, b, 1 if p is None else p[2]) for b, p in enumerate(s.places)], n)
        for s, n in pieces
    ]
    places = list(ref.places)
    places[a] = (dim, 1, sum(n for _, n in pieces))

    def joined(which: int) -> RF:
        rfs = [(None if s is None else s.lo if which else s.hi, n) for s, n in pieces]
        start, jump = seams.grid([(None if rf is None else (rf.start[a], rf.jump[a]), n) for rf, n in rfs])
        # the infinite-grid pattern does not apply on the joined axis: its sizes come from the spans
        return edit_axes(
            ref.lo if which else ref.hi, [a], lambda sub: RF(sub.size, (jump,), (start,), (_support.identity(),))
        )

    return RFState(joined(0), joined(1), tuple(places), seams.join_spans(spans, a))
