"""Receptive fields over a branching graph: largest and smallest size over all paths, jump and start.

Each node's state comes from its inputs: conv and pooling apply :func:`cnnlab.arith.rf_conv`,
transposed conv :func:`~cnnlab.arith.rf_conv_transpose`, upsampling :func:`~cnnlab.arith.rf_upsample`;
merges (add, cat, mul) take the largest size and the smallest ``size_min`` of their inputs and warn
when the inputs' grids do not line up (different jump or centre).
The state each node carries is :class:`~cnnlab.analysis.rfstate.RFState` (:mod:`cnnlab.analysis.rfstate`);
its finite-map part, described below, is kept by :mod:`cnnlab.analysis.rfmap`.

Every spatial axis is followed to the tensor axis it occupies (``RFState.places``): permute,
transpose, movedim, view, flatten and unflatten move it without widening anything, so a
channels-last LayerNorm/Linear (ConvNeXt) keeps the per-pixel field. An op that combines all values
along a tensor axis (Linear on the last axis, softmax, mean/sum/max over a dim, global pooling,
attention) makes every unit see the whole extent of the spatial axes there, and those axes only.
Normalisation statistics (LayerNorm, GroupNorm) are not counted as context.

Sizes are the textbook infinite-grid values: padding positions count as grid positions, so a field
may exceed the input (VGG-16 on 32x32 ends at 212) and is never cut to the image.
Adaptive pooling uses PyTorch's windows ``[floor(i*n/m), ceil((i+1)*n/m))`` exactly. When they are
uneven (``m`` does not divide ``n``, which includes every upsampling ``n < m`` such as 1 -> 7) the
windows have no period to extend past the map, so from there on each real unit's exact span is
followed on the finite map (:mod:`cnnlab.analysis.onmap`): a padding position beyond the pooled map
adds nothing, and each unit that went into the pool keeps its whole textbook field. After 1 -> 7
every unit sees the one input unit's whole field (212 for VGG-16 on 32x32).
A layer that combines a whole axis (fc after flatten, global pooling) sees ``size + (n-1)*jump`` and
keeps the jump it reads (``j_out = j_in``): it is a window as wide as the map sliding by one unit, as
the seeds' VGG table and ``cnnlab explain rf`` have it; on the one unit left the jump only says how far
apart its copies would sit on a larger input. Its size is what that one unit sees, units ``0 .. n-1``
(:func:`cnnlab.arith.receptive.rf_whole_map`): after upsampling, other phases of such a window would
see a pixel more, but they are not on the map, and the units a bilinear or bicubic upsampling reads beyond
the map's borders on the infinite grid are left out as PyTorch clamps its source indices.
Upsampling follows PyTorch's source index per mode: nearest, nearest-exact, (bi/tri)linear (two
neighbours), bicubic (four), ``align_corners``, and the given ``scale_factor`` rather than the rounded size
ratio; interpolate's ``area`` mode is adaptive pooling; an antialiased interpolate is not followed
(``rf-unknown``). Padding that copies units (reflect, replicate, circular; ``F.pad``, the padding modules
or a conv's ``padding_mode``) reads the units it copies on a finite map. On the infinite grid reflect and
replicate keep the textbook sizes (a unit at the border sees no more than one inside), but circular
padding wraps: a unit at the border sees the opposite edge, so from there on the axis is followed on the
finite map, as after an uneven adaptive pool.
A merge input with one unit along an axis (``x * pool(x)`` in SE and attention blocks) broadcasts that
unit's field to every unit of the output; it widens the sizes but neither sets the merge's start, jump
and place along that axis nor counts as misaligned (an SE gate with a residual, ``(H, 1) * (1, W)`` gates).
Merge inputs whose units sit on different jumps along an axis (an FPN on an odd input: ``interpolate(size=9)``
of 5 units reads ``floor(o * 5/9)``, unevenly) share no infinite-grid pattern: that axis goes on the finite map
and each unit sees the union of its inputs' spans there. Upsampling whose sizes do not divide (or from one
unit) puts its axis on the finite map too.
A ``cat`` along a spatial axis (dim 2 or 3 of NCHW, or negative; ``torch.concat``/``concatenate`` too)
joins maps that no longer share one grid, so from there on every axis is followed on the finite map with
each piece as a part of its own (:mod:`cnnlab.analysis.seams`): a later window that straddles a seam sees
both pieces, a unit on one side only its own, and the smallest size is the path through one piece. The
joined axis's jump is the mean spacing of its unit centres and its start the centre of unit 0, as after
an uneven adaptive pool. A cat along channels is a merge. Parts that a crop cut away are dropped and
parts that reach the same units are one (:func:`~cnnlab.analysis.onmap.compact`), so repeated cats keep
few parts; a map split into more than ``MAX_PARTS`` (256) pieces is not followed (``rf-unknown``, info).
Known limits: after an uneven adaptive pool or a spatial cat, start and jump go on by the grid formulas
from those mean values, so a later window places its start as on an evenly spaced grid (the sizes
stay exact); the hooks path (models torch.fx cannot trace) sees no functional cat at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cnnlab.analysis import nodes as K
from cnnlab.analysis import onmap, seams
from cnnlab.analysis.capture import Graph, Node, reaches_input
from cnnlab.analysis.onmap import Spans
from cnnlab.analysis.report import LintWarning
from cnnlab.analysis.resample import adaptive_windows
from cnnlab.analysis.rfmap import (
    MAX_PARTS,
    AxesDiffer,
    TooManyParts,
    broadcasts,
    compact_state,
    join_state,
    merge_maps,
    part_count,
    sizes_from_map,
    spans_through,
    uniform,
    unit_spans,
    wraps,
)
from cnnlab.analysis.rfstate import Place, RFState, clean_axis, edit_axes, make_rf
from cnnlab.arith import RF, _support, axis_names, rf_conv, rf_conv_transpose, rf_input, rf_upsample
from cnnlab.arith._support import AxisSupport, Span
from cnnlab.arith.receptive import rf_whole_map

# RFState and make_rf live in rfstate; they are imported from here too
__all__ = ["RFState", "make_rf", "propagate"]


def _span_union(sup: AxisSupport, units: range) -> Span:
    """The input pixels units ``units`` of an infinite-grid pattern see together."""
    return onmap.union(sup.unit(u) for u in units)


def _width(span: Span) -> int:
    return 0 if span is None else span[1] - span[0] + 1


def _collapse_rf(rf: RF, a: int, n: int, spans: Spans | None) -> RF:
    """Axis ``a`` of ``rf`` after every one of its ``n`` units (``spans`` on a finite map) is combined."""

    def fn(sub: RF) -> RF:
        # a window of all n units sliding by one unit: j_out = j_in (as explain rf and the seeds' VGG
        # table), centre of the one unit left = centre of the map; that unit sees units 0 .. n-1
        whole = rf_whole_map(sub, n)
        if spans is None:
            return RF((max(1, whole.size[0]),), whole.jump, whole.start, whole.supports())
        union = onmap.union(spans)
        return RF((max(1, _width(union)),), whole.jump, whole.start, (AxisSupport(1, 1, (union,)),))

    return edit_axes(rf, [a], fn)


def _collapse(state: RFState, axes: Sequence[int] | None = None) -> RFState:
    """Every unit along ``axes`` (all when None) sees the whole axis; those axes leave the tensor."""
    chosen = [a for a, p in enumerate(state.places) if p is not None and (axes is None or a in axes)]
    hi, lo, places, maps = state.hi, state.lo, list(state.places), list(state.on_map)
    for a in chosen:
        n, both = places[a][2], maps[a]  # type: ignore[index]
        hi_spans, lo_spans = (tuple(sp for part in parts for sp in part) for parts in both) if both else (None, None)
        hi, lo = _collapse_rf(hi, a, n, hi_spans), _collapse_rf(lo, a, n, lo_spans)
        if both is not None:  # the one unit left sees what all of them saw, part by part
            maps[a] = tuple(tuple((onmap.union(part),) for part in parts) for parts in both)  # type: ignore[assignment]
        places[a] = None
    return RFState(hi, lo, tuple(places), tuple(maps))


def _axes_in(state: RFState, dims: Sequence[int]) -> list[int]:
    return [a for a, p in enumerate(state.places) if p is not None and p[0] in dims]


def _adaptive_support(sup: AxisSupport, n: int, m: int) -> AxisSupport:
    """Adaptive pooling of ``n`` units to ``m``: unit ``o`` reads ``[floor(o*n/m), ceil((o+1)*n/m))``."""
    g = math.gcd(n, m)
    outs, ins = m // g, n // g  # every ``outs`` outputs the windows move ``ins`` units on
    t = sup.period // math.gcd(sup.period, ins)  # ... and ``t`` such moves return to the same residue
    spans = []
    for o in range(outs * t):
        first, last = (o * n) // m, -(-((o + 1) * n) // m) - 1
        spans.append(_span_union(sup, range(first, last + 1)))
    return AxisSupport(outs * t, sup.shift * (t * ins // sup.period), tuple(spans))


def _adaptive_rf(sub: RF, sizes_in: Sequence[int], sizes_out: Sequence[int]) -> RF:
    sups, sizes, jump, start = [], [], [], []
    for sup, j, st, n, m in zip(sub.supports(), sub.jump, sub.start, sizes_in, sizes_out):
        _, _, step, centre = adaptive_windows(n, m)
        if m == 1:  # global pooling: one window over the whole map sliding by one unit, as fc
            whole = rf_whole_map(RF((1,), (j,), (st,), (sup,)), n)  # the one unit sees units 0 .. n-1
            sups.append(whole.supports()[0])
            sizes.append(whole.size[0])
        else:
            sups.append(_adaptive_support(sup, n, m))
            sizes.append(sups[-1].widest())
        jump.append(j * step)  # mean spacing of the window centres
        start.append(st + centre * j)
    return RF(tuple(sizes), tuple(jump), tuple(start), tuple(sups))


def _move(sub: RF, offsets: Sequence[float], steps: Sequence[int]) -> RF:
    """Padding (negative offsets) or cropping (positive): moves ``start``; a step multiplies ``jump``."""
    # unit o is input unit o*step + offset (a 1-tap window with stride ``step`` and left padding -offset)
    sups = tuple(_support.conv(sup, 1, int(s), -int(o), 1) for sup, o, s in zip(sub.supports(), offsets, steps))
    return RF(
        tuple(sp.widest() for sp in sups),
        tuple(j * s for j, s in zip(sub.jump, steps)),
        tuple(st + o * j for st, o, j in zip(sub.start, offsets, sub.jump)),
        sups,
    )


def _axes(values: Sequence[float]) -> str:
    """[2, 2] rather than [2.0, 2.0] (general format, 6 significant digits)."""
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _grid_owner(states: list[RFState], owns: list[list[bool]], ref: RFState, a: int) -> RFState:
    """The input whose jump and start a merge keeps along axis ``a``: ``ref`` unless it is broadcast
    there, else the first input that is not (any, when all are)."""
    owners = [s for s, own in zip(states, owns) if own[a]]
    return ref if not owners or any(s is ref for s in owners) else owners[0]


def _per_axis(rfs: list[RF], ext: list[int], jump: tuple[float, ...], start: tuple[float, ...]) -> RF:
    """A merge's RF axis by axis: an input's own exact support where it has the extreme size on the merge's
    jump along that axis (an FPN's lateral along W while H, upsampled unevenly, sits on another jump), else
    the grid recurrence (:func:`make_rf`)."""
    approx = make_rf(ext, jump, start)
    size, jumps, starts, sups = list(approx.size), list(approx.jump), list(approx.start), list(approx.supports())
    for a in range(len(ext)):
        rf = next((r for r in rfs if r.size[a] == ext[a] and r.jump[a] == jump[a]), None)
        if rf is not None:
            size[a], jumps[a], starts[a], sups[a] = rf.size[a], rf.jump[a], rf.start[a], rf.supports()[a]
    return RF(tuple(size), tuple(jumps), tuple(starts), tuple(sups))


def _merge(
    states: list[RFState], shapes: list[tuple[int, ...]], node: Node, nd: int
) -> tuple[RFState, LintWarning | None]:
    """Largest of the sizes, smallest of the minima; grids taken from the first full-size input."""
    out = tuple(node.output_shape)
    # inputs whose spatial axes have the output's sizes (a channel concat's inputs differ in channels only)
    full = [
        (s, shape)
        for s, shape in zip(states, shapes)
        if s.spatial and len(shape) == len(out) and all(p is None or shape[p[0]] == out[p[0]] for p in s.places)
    ]
    ref = full[0][0] if full else states[0]
    n_out = [max((s.places[a][2] for s in states if s.places[a] is not None), default=1) for a in range(nd)]  # type: ignore[index]
    # an input with one unit along an axis (an SE gate, a whole-map reduction) is broadcast to every unit
    # there: it widens the field but does not say where the units sit, nor can it be misaligned
    # (so is one whose units all see the same span: a one-unit map upsampled to full size)
    owns = [[not (n > 1 and (broadcasts(s.places[a]) or uniform(s, a))) for a, n in enumerate(n_out)] for s in states]
    pick = [_grid_owner(states, owns, ref, a) for a in range(nd)]
    hi_ext = [max(s.hi.size[a] for s in states) for a in range(nd)]
    lo_ext = [min(s.lo.size[a] for s in states) for a in range(nd)]
    hi_jump, hi_start = (tuple(getattr(p.hi, v)[a] for a, p in enumerate(pick)) for v in ("jump", "start"))
    lo_jump, lo_start = (tuple(getattr(p.lo, v)[a] for a, p in enumerate(pick)) for v in ("jump", "start"))
    places = tuple(p.places[a] for a, p in enumerate(pick))  # (H, 1) * (1, W): H from the one, W the other
    # keep arith's own RF objects where one input already has the extreme sizes (exact supports)
    whole = [s for s, own in zip(states, owns) if all(own)]
    hi = next((s.hi for s in whole if list(s.hi.size) == hi_ext and s.hi.jump == hi_jump), None)
    lo = next((s.lo for s in whole if list(s.lo.size) == lo_ext and s.lo.jump == lo_jump), None)
    merged = RFState(
        hi or _per_axis([s.hi for s in whole], hi_ext, hi_jump, hi_start),
        lo or _per_axis([s.lo for s in whole], lo_ext, lo_jump, lo_start),
        places,
        merge_maps(states, places, nd),
    )
    warning = None
    owners = [(s, own) for s, own in zip(states, owns) if any(s is f for f, _ in full)]
    per_axis = [{(round(s.hi.jump[a], 4), round(s.hi.start[a], 4)) for s, own in owners if own[a]} for a in range(nd)]
    off = [a for a in range(nd) if len(per_axis[a]) > 1]
    grids = {
        (tuple(round(v, 4) for v in s.hi.jump), tuple(round(v, 4) for v in s.hi.start))
        for s, own in owners
        if any(own[a] for a in off)
    }
    if node.geometry.kind == K.MERGE and off:
        text = "; ".join(f"jump {_axes(j)} start {_axes(st)}" for j, st in sorted(grids))
        apart = _apart([per_axis[a] for a in range(nd)], nd)
        warning = LintWarning(
            "rf-misaligned",
            "warning",
            node.name,
            f"the merged inputs sit on different grids ({text}){apart}: the same output position combines "
            "features centred on different input pixels; align padding/strides or crop before merging",
        )
    return merged, warning


_FRACTIONS = {0.25: "a quarter of", 0.5: "half", 0.75: "three quarters of"}


def _apart(per_axis: list[set[tuple[float, float]]], nd: int) -> str:
    """How far apart two grids of the same jump put their centres: '; along H and W the centres are 2 px
    apart, half a unit of 4 px' (a nearest x2 upsampling, an average-pool shortcut)."""
    said: dict[str, list[str]] = {}  # the sentence -> the axes it holds for
    for name, grids in zip(axis_names(nd), per_axis):
        if len(grids) != 2:
            continue
        (j1, s1), (j2, s2) = sorted(grids)
        if j1 != j2 or j1 <= 0:
            continue
        gap = abs(s1 - s2)
        share = round(gap / j1, 4)
        unit = f"{_FRACTIONS[share]} a unit" if share in _FRACTIONS else f"{share:g} unit{'s' if share != 1 else ''}"
        said.setdefault(f"the centres are {gap:g} px apart, {unit} of {j1:g} px", []).append(name)
    return "".join(f"; along {' and '.join(axes)} {text}" for text, axes in said.items())


def _unknown(node: Node, shape_in: tuple[int, ...]) -> tuple[None, LintWarning]:
    return None, LintWarning(
        "rf-unknown",
        "info",
        node.name,
        f"cnnlab does not know how {node.type} maps the spatial axes of its {list(shape_in)} input to "
        f"{list(node.output_shape)}; receptive fields after it are not reported",
    )


def _interleaved(node: Node, dim: int, shape_in: tuple[int, ...]) -> LintWarning:
    return LintWarning(
        "rf-unknown",
        "info",
        node.name,
        f"{node.name} ({node.type}) slides over tensor axis {dim} of its {list(shape_in)} input, which holds a "
        "spatial axis mixed with another (a flatten, reshape or stack before it interleaved them); cnnlab does "
        "not follow a window over such an axis, so receptive fields after it are not reported",
    )


def _too_many_parts(node: Node, count: int) -> LintWarning:
    return LintWarning(
        "rf-unknown",
        "info",
        node.name,
        f"the spatial cats up to {node.name} split the map into {count} pieces that no longer share one grid, "
        f"more than cnnlab follows ({MAX_PARTS}); receptive fields after it are not reported",
    )


def _axes_differ(node: Node, dim: int | None) -> LintWarning:
    return LintWarning(
        "rf-unknown",
        "info",
        node.name,
        f"{node.name} joins its inputs along tensor axis {dim}, which holds a different spatial axis (or none, or "
        "several flattened together) in each of them; cnnlab follows a cat whose inputs hold the same spatial "
        "axes in the same places. Receptive fields after it are not reported",
    )


def _reshaped(state: RFState, shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> RFState | None:
    """Places after a reshape (row-major order): None when an axis is split across output axes."""

    def strides(shape: tuple[int, ...]) -> list[int]:
        return [math.prod(shape[i + 1 :]) for i in range(len(shape))]

    g_in, g_out = strides(shape_in), strides(shape_out)
    places: list[Place] = []
    for place in state.places:
        if place is None:
            places.append(None)
            continue
        dim, stride, n = place
        digit = g_in[dim] * stride  # the axis is the digit of this weight in the flat index
        fits = [
            u
            for u in range(len(shape_out))
            if digit % g_out[u] == 0 and g_out[u] <= digit and digit * n <= g_out[u] * shape_out[u]
        ]
        if not fits:
            return None
        u = next((v for v in fits if shape_out[v] == n and g_out[v] == digit), fits[-1])
        places.append((u, digit // g_out[u], n))
    return RFState(state.hi, state.lo, tuple(places), state.on_map)


def _renumber(state: RFState, fn: Any) -> RFState:
    places = tuple(None if p is None else (fn(p[0]), p[1], p[2]) for p in state.places)
    return RFState(state.hi, state.lo, places, state.on_map)


_GRID = (K.CONV, K.POOL, K.CONV_T, K.UPSAMPLE, K.ADAPTIVE, K.PAD, K.CROP)


def _grid_axes(g: K.Geometry, nd: int) -> int:
    """How many trailing tensor axes a grid op works on."""
    if g.kind in (K.CONV, K.POOL, K.CONV_T):
        return len(g.k)
    if g.kind == K.UPSAMPLE:
        return len(g.scale)
    if g.kind == K.PAD:
        return len(g.p)
    if g.kind == K.CROP:
        return len(g.s)
    return nd


def _uneven_upsample(g: K.Geometry, n: int, m: int) -> bool:
    """Resampling ``n`` units to ``m`` when neither divides the other (``interpolate(size=9)`` of 5): the
    source indices ``floor(o * n/m)`` step unevenly, so no infinite-grid pattern holds (the finite map does);
    or from one unit, which every output unit reads (PyTorch clamps the indices), not its neighbours'."""
    return g.kind == K.UPSAMPLE and (max(n, m) % min(n, m) != 0 or n == 1 < m)


def _grid(node: Node, state: RFState, shape_in: tuple[int, ...], nd: int) -> tuple[RFState | None, LintWarning | None]:
    """Conv, pooling, upsampling, padding, cropping: each spatial axis among the op's trailing axes
    gets the op's window along that axis; an axis in the channel position is mixed by a conv."""
    g, out = node.geometry, node.output_shape
    k = _grid_axes(g, nd)
    first, first_out = len(shape_in) - k, len(out) - k
    axes: list[int] = []  # spatial axes the op slides over, in op-axis order
    ops: list[int] = []
    for a, place in enumerate(state.places):
        if place is not None and place[0] >= first:
            if not clean_axis(place, shape_in):  # a window over a flattened mix of axes
                return None, _interleaved(node, place[0], shape_in)
            axes.append(a)
            ops.append(place[0] - first)
    mixes = g.kind in (K.CONV, K.CONV_T) and not (g.groups == g.in_ch == g.out_ch)
    if mixes and first > 1:
        state = _collapse(state, _axes_in(state, [1]))  # the conv sums over every channel
    if not axes:
        return state, None
    if g.kind in (K.CONV, K.POOL):
        ks, ss, ds = (tuple(v[i] for i in ops) for v in (g.k, g.s, g.d))
        ps = tuple(g.p[i] for i in ops)
        fn: Any = lambda r: rf_conv(r, ks, ss, ps, ds)  # noqa: E731
    elif g.kind == K.CONV_T:
        ks, ss, ds = (tuple(v[i] for i in ops) for v in (g.k, g.s, g.d))
        fn = lambda r: rf_conv_transpose(r, ks, ss, tuple(g.p[i][0] for i in ops), ds)  # noqa: E731
    elif g.kind == K.UPSAMPLE:
        mode: Any = g.mode
        fn = lambda r: rf_upsample(r, tuple(g.scale[i] for i in ops), mode, align_corners=g.align_corners)  # noqa: E731
    elif g.kind == K.PAD:
        fn = lambda r: _move(r, [-g.p[i][0] for i in ops], [1] * len(ops))  # noqa: E731
    elif g.kind == K.CROP:
        fn = lambda r: _move(r, [g.offset[i] for i in ops], [g.s[i] for i in ops])  # noqa: E731
    else:  # adaptive pooling: exact windows; uneven ones make the grid finite (onmap)
        n_in = [shape_in[first + i] for i in ops]
        n_out = [out[first_out + i] for i in ops]
        fn = lambda r: _adaptive_rf(r, n_in, n_out)  # noqa: E731
    maps, places = list(state.on_map), list(state.places)
    for a, i in zip(axes, ops):
        n, m = shape_in[first + i], out[first_out + i]
        if maps[a] is not None or (g.kind == K.ADAPTIVE and n % m) or _uneven_upsample(g, n, m) or wraps(g, i):
            both = unit_spans(state, a, n)
            done: dict[Spans, Spans] = {}  # parts of a joined map often share their spans along an axis
            maps[a] = tuple(
                tuple(done[sp] if sp in done else done.setdefault(sp, spans_through(g, i, sp, m)) for sp in parts)
                for parts in both
            )  # type: ignore[assignment]
        places[a] = (first_out + i, 1, m)  # the op's axes stay last (a P4 lift adds one before)
    try:
        hi, lo = edit_axes(state.hi, axes, fn), edit_axes(state.lo, axes, fn)
    except _support.PeriodTooLong as err:  # a stride or scale of 10^5 and more: not walked unit by unit
        return None, LintWarning("rf-unknown", "info", node.name, f"{err}; receptive fields after it are not reported")
    return RFState(hi, lo, tuple(places), tuple(maps)), None


def _step(
    node: Node, states: list[RFState], shapes: list[tuple[int, ...]], nd: int
) -> tuple[RFState | None, LintWarning | None]:
    g = node.geometry
    state, shape_in, out = states[0], tuple(shapes[0]), node.output_shape
    if len(states) > 1 and g.kind in _GRID:
        # MaxUnpool: the values and the indices of one pooling; the op slides over the merged view
        state = _merge(states, shapes, node, nd)[0]
        return _grid(node, state, shape_in, nd) if state.spatial else (state, None)
    if len(states) > 1 or g.kind == K.MERGE:
        merged, warning = _merge(states, shapes, node, nd)
        if g.kind == K.LINEAR and merged.spatial:  # nn.Bilinear mixes the last axis of both of its inputs
            return _collapse(merged, _axes_in(merged, [len(shape_in) - 1])), warning
        return merged, warning
    if not state.spatial:
        return state, None
    if g.reordered and _axes_in(state, g.reordered):
        return _unknown(node, shape_in)  # a flip or roll of a spatial axis: not followed
    if g.perm:
        return _renumber(state, g.perm.index), None
    if g.reshape:
        moved = _reshaped(state, shape_in, out)
        return (moved, None) if moved is not None else _unknown(node, shape_in)
    if g.reduced is not None:
        kept = [d for d in range(len(shape_in)) if g.keepdim or d not in g.reduced]
        reduced = _collapse(state, _axes_in(state, g.reduced))
        return _renumber(reduced, kept.index), None
    if g.mixed:
        return _collapse(state, _axes_in(state, g.mixed)), None
    if g.kind == K.LINEAR or (g.kind == K.MATMUL and shape_in[:-1] == out[:-1]):
        return _collapse(state, _axes_in(state, [len(shape_in) - 1])), None  # mixes the last axis
    if g.kind in (K.ATTENTION, K.MATMUL, K.COLLAPSE):
        return _collapse(state), None  # conservative: every value may see every position
    if g.kind in _GRID:
        return _grid(node, state, shape_in, nd)
    if g.kind == K.UNKNOWN:
        return _unknown(node, shape_in)
    if out == shape_in:
        return state, None
    # an op on the same trailing grid that adds or drops leading axes (a P4 rotation pool drops the
    # orientation axis): the spatial axes keep their place counted from the end
    shift = len(out) - len(shape_in)
    if all(p is None or (0 <= p[0] + shift < len(out) and out[p[0] + shift] == shape_in[p[0]]) for p in state.places):
        return _renumber(state, lambda d: d + shift), None
    return _collapse(state), None  # an op that changed the axes in a way we do not follow


def _flattened(produced: tuple[int, ...], node: Node, nd: int) -> bool:
    received = node.input_shapes[0] if node.input_shapes else produced
    return len(produced) >= nd + 2 and len(received) < nd + 2


def propagate(graph: Graph) -> tuple[list[RFState | None], list[LintWarning]]:
    """Receptive-field state of every node in ``graph`` (None where unknown) and alignment warnings."""
    nd = graph.ndim
    states: list[RFState | None] = []
    warnings: list[LintWarning] = []
    variable = reaches_input(graph)
    shape0 = graph.nodes[0].output_shape
    extent = tuple(shape0[-nd:])  # spatial sizes of the input
    for i, node in enumerate(graph.nodes):
        if i == 0:
            start = rf_input(nd)
            places = tuple((len(shape0) - nd + a, 1, n) for a, n in enumerate(extent))
            states.append(RFState(start, start, places, (None,) * nd))
            continue
        # operands computed from parameters or constants alone (``w.view(1, C, 1, 1)``, a scalar
        # buffer) see no pixel: ``x * w`` keeps the receptive field of ``x``
        sources = [j for j in node.inputs if variable[j]]
        if not sources or not variable[i]:  # zeros_like(x) reads x's shape alone
            states.append(None)
            continue
        ins = [states[j] for j in sources]
        known = [s for s in ins if s is not None]
        if len(known) < len(ins):
            states.append(None)
            continue
        shapes = [graph.nodes[j].output_shape for j in sources]
        if len(known) == 1 and known[0].spatial and _flattened(shapes[0], node, nd):
            # the hooks path cannot see a flatten between modules: collapse here
            known = [_collapse(known[0])]
        dim = seams.cat_dim(node)
        pieces: list[tuple[RFState | None, int]] = []
        if dim is not None:
            rows = seams.operands(graph, node)
            pieces = [
                (states[j] if j is not None and variable[j] else None, s[dim]) for j, s in zip(rows, node.input_shapes)
            ]
        try:
            joined = join_state(pieces, node.input_shapes, dim, nd) if dim is not None else None
            state, warning = (joined, None) if joined is not None else _step(node, known, shapes, nd)
            state = None if state is None else compact_state(state)
            if state is not None and part_count(state) > MAX_PARTS:
                raise TooManyParts(part_count(state))
        except TooManyParts as many:  # repeated spatial cats: not followed rather than unbounded time
            state, warning = None, _too_many_parts(node, many.count)
        except AxesDiffer:
            state, warning = None, _axes_differ(node, dim)
        states.append(sizes_from_map(state) if state is not None else None)
        if warning is not None:
            warnings.append(warning)
    return states, warnings
