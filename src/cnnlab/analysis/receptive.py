"""Receptive fields over a branching graph: largest and smallest size over all paths, jump and start.

Each node's state comes from its inputs: conv and pooling apply :func:`cnnlab.arith.rf_conv`,
transposed conv :func:`~cnnlab.arith.rf_conv_transpose`, upsampling :func:`~cnnlab.arith.rf_upsample`;
merges (add, cat, mul) take the largest size and the smallest ``size_min`` of their inputs and warn
when the inputs' grids do not line up (different jump or centre). Global pooling, flatten and reshapes
that merge the spatial axes make every feature see the whole remaining map (``collapse``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analysis import nodes as K
from cnnlab.analysis.capture import Graph, Node
from cnnlab.analysis.report import LintWarning
from cnnlab.arith import RF, rf_conv, rf_conv_transpose, rf_input, rf_upsample

_EPS = 1e-6


@dataclass(frozen=True)
class RFState:
    """``hi``: the largest receptive field into a node; ``lo``: the same grid with the smallest size."""

    hi: RF
    lo: RF
    spatial: bool = True  # False once the spatial axes were pooled away / flattened


def make_rf(extent: Sequence[float], jump: Sequence[float], start: Sequence[float]) -> RF:
    """An RF from (possibly fractional) extents; ``size`` rounds up to whole pixels."""
    size = tuple(max(1, math.ceil(e - _EPS)) for e in extent)
    return RF(size, tuple(float(j) for j in jump), tuple(float(s) for s in start))


def _both(state: RFState, fn: object, *args: object, **kwargs: object) -> RFState:
    f: Any = fn
    return RFState(f(state.hi, *args, **kwargs), f(state.lo, *args, **kwargs), state.spatial)


def _grow(rf: RF, windows: Sequence[float], strides: Sequence[float], centres: Sequence[float]) -> RF:
    # size += (window - 1) * jump; jump *= stride; start += centre * jump (all per axis, in input pixels)
    return make_rf(
        [e + (w - 1) * j for e, w, j in zip(rf.size, windows, rf.jump)],
        [j * s for j, s in zip(rf.jump, strides)],
        [st + c * j for st, c, j in zip(rf.start, centres, rf.jump)],
    )


def _collapse(state: RFState, spatial_in: Sequence[int]) -> RFState:
    """Global pooling / flatten over an ``n``-cell map: each feature sees every cell."""
    if not state.spatial:
        return state
    n = list(spatial_in)
    centres = [(v - 1) / 2 for v in n]
    return RFState(_grow(state.hi, n, n, centres), _grow(state.lo, n, n, centres), spatial=False)


def _adaptive(state: RFState, spatial_in: Sequence[int], spatial_out: Sequence[int]) -> RFState:
    wins = [K.adaptive_windows(n, m) for n, m in zip(spatial_in, spatial_out)]
    hi = _grow(state.hi, [w[0] for w in wins], [w[2] for w in wins], [w[3] for w in wins])
    lo = _grow(state.lo, [w[1] for w in wins], [w[2] for w in wins], [w[3] for w in wins])
    return RFState(hi, lo, state.spatial)


def _shift(state: RFState, offsets: Sequence[float], steps: Sequence[int]) -> RFState:
    """Padding (negative offsets) or cropping (positive): moves ``start``; a step multiplies ``jump``."""

    def move(rf: RF) -> RF:
        return make_rf(
            rf.size,
            [j * s for j, s in zip(rf.jump, steps)],
            [st + o * j for st, o, j in zip(rf.start, offsets, rf.jump)],
        )

    return RFState(move(state.hi), move(state.lo), state.spatial)


def _axes(values: Sequence[float]) -> str:
    """[2, 2] rather than [2.0, 2.0] (general format, 6 significant digits)."""
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _merge(
    states: list[RFState], shapes: list[tuple[int, ...]], node: Node, nd: int
) -> tuple[RFState, LintWarning | None]:
    """Largest of the sizes, smallest of the minima; grids taken from the first full-size input."""
    out_sp = node.output_shape[-nd:] if len(node.output_shape) >= nd + 2 else ()
    full = [
        (s, shape)
        for s, shape in zip(states, shapes)
        if s.spatial and len(shape) >= nd + 2 and tuple(shape[-nd:]) == tuple(out_sp)
    ]
    ref = full[0][0] if full else states[0]
    hi_ext = [max(s.hi.size[a] for s in states) for a in range(nd)]
    lo_ext = [min(s.lo.size[a] for s in states) for a in range(nd)]
    # keep arith's own RF objects where one input already has the extreme sizes (exact supports)
    hi = next((s.hi for s in states if list(s.hi.size) == hi_ext and s.hi.jump == ref.hi.jump), None)
    lo = next((s.lo for s in states if list(s.lo.size) == lo_ext and s.lo.jump == ref.lo.jump), None)
    merged = RFState(
        hi or make_rf(hi_ext, ref.hi.jump, ref.hi.start),
        lo or make_rf(lo_ext, ref.lo.jump, ref.lo.start),
        ref.spatial,
    )
    warning = None
    grids = {(tuple(round(v, 4) for v in s.hi.jump), tuple(round(v, 4) for v in s.hi.start)) for s, _ in full}
    if node.geometry.kind == K.MERGE and len(grids) > 1:
        text = "; ".join(f"jump {_axes(j)} start {_axes(st)}" for j, st in sorted(grids))
        warning = LintWarning(
            "rf-misaligned",
            "warning",
            node.name,
            f"the merged inputs sit on different grids ({text}): the same output position combines "
            "features centred on different input pixels; align padding/strides or crop before merging",
        )
    return merged, warning


def _step(
    node: Node, states: list[RFState], shapes: list[tuple[int, ...]], nd: int
) -> tuple[RFState | None, LintWarning | None]:
    g = node.geometry
    first = states[0]
    sp_in = node.input_shapes[0][-nd:] if node.input_shapes and len(node.input_shapes[0]) >= nd + 2 else ()
    sp_out = node.output_shape[-nd:] if len(node.output_shape) >= nd + 2 else ()
    spatial_ok = first.spatial and len(sp_in) == nd
    if g.kind in (K.CONV, K.POOL) and spatial_ok and len(g.k) == nd:
        return _both(first, rf_conv, g.k, g.s, g.p, g.d), None
    if g.kind == K.CONV_T and spatial_ok and len(g.k) == nd:
        return _both(first, rf_conv_transpose, g.k, g.s, tuple(p[0] for p in g.p), g.d), None
    if g.kind == K.UPSAMPLE and spatial_ok:
        return _both(first, rf_upsample, g.scale, g.mode), None
    if g.kind == K.ADAPTIVE and spatial_ok and len(sp_out) == nd:
        return _adaptive(first, sp_in, sp_out), None
    if g.kind == K.PAD and spatial_ok:
        return _shift(first, [-p[0] for p in g.p], [1] * nd), None
    if g.kind == K.CROP and spatial_ok:
        return _shift(first, g.offset, g.s), None
    if g.kind == K.COLLAPSE:
        return (_collapse(first, sp_in) if spatial_ok else first), None
    if g.kind == K.UNKNOWN and spatial_ok:
        return None, LintWarning(
            "rf-unknown",
            "info",
            node.name,
            f"cnnlab does not know how {node.type} maps its {list(sp_in)} grid to {list(sp_out)}; "
            "receptive fields after it are not reported",
        )
    return _merge(states, shapes, node, nd)


def _flattened(produced: tuple[int, ...], node: Node, nd: int) -> bool:
    received = node.input_shapes[0] if node.input_shapes else produced
    return len(produced) >= nd + 2 and len(received) < nd + 2


def input_dependent(graph: Graph) -> list[bool]:
    """Per node: does its output depend on the model input (False for parameter/constant-only ops)?"""
    variable: list[bool] = []
    for i, node in enumerate(graph.nodes):
        variable.append(i == 0 or any(variable[j] for j in node.inputs))
    return variable


def propagate(graph: Graph) -> tuple[list[RFState | None], list[LintWarning]]:
    """Receptive-field state of every node in ``graph`` (None where unknown) and alignment warnings."""
    nd = graph.ndim
    states: list[RFState | None] = []
    warnings: list[LintWarning] = []
    variable = input_dependent(graph)
    for i, node in enumerate(graph.nodes):
        if i == 0:
            start = rf_input(nd)
            states.append(RFState(start, start))
            continue
        # operands computed from parameters or constants alone (``w.view(1, C, 1, 1)``, a scalar
        # buffer) see no pixel: ``x * w`` keeps the receptive field of ``x``
        sources = [j for j in node.inputs if variable[j]]
        if not sources:
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
            known = [_collapse(known[0], shapes[0][-nd:])]
        state, warning = _step(node, known, shapes, nd)
        states.append(state)
        if warning is not None:
            warnings.append(warning)
    return states, warnings
