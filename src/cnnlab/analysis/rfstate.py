"""The receptive-field state each graph node carries (:class:`RFState`) and the helpers that build and edit its RFs.

``hi`` and ``lo`` are the largest and the smallest field into the node, ``places`` where each spatial axis
lives in the tensor, ``on_map`` the exact spans of the real units on a finite map
(:mod:`cnnlab.analysis.rfmap`). :mod:`cnnlab.analysis.receptive` propagates it through the graph.

>>> make_rf([3, 2.5], [1.0, 2.0], [0.0, 0.5]).size  # fractional extents round up to whole pixels
(3, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analysis.onmap import Parts
from cnnlab.arith import RF, _support
from cnnlab.arith._support import AxisSupport, Span

_EPS = 1e-6


# on a finite map (after an uneven adaptive pool or a spatial cat): the span each real unit along one axis
# sees, per part, for ``hi`` and ``lo`` (one span once the axis was combined away); None on the textbook
# infinite grid. One part until a spatial cat joins pieces; part k is the same on every axis
OnMap = tuple[Parts, Parts] | None

# where one spatial axis lives in a node's output: (tensor axis, stride inside that axis, cells), or
# None once it is no longer an axis of the tensor (pooled, reduced, mixed away): every value then
# sees the axis's whole extent, which no later op can widen
Place = tuple[int, int, int] | None


@dataclass(frozen=True)
class RFState:
    """``hi``: the largest receptive field into a node; ``lo``: the same grid with the smallest size.

    ``places`` follows each spatial axis through permutes and reshapes; ``on_map`` holds, per axis, the
    exact spans of the real units once an uneven adaptive pool or a spatial cat made the grid finite
    (:data:`OnMap`); the sizes along such an axis are the widest of them.
    """

    hi: RF
    lo: RF
    places: tuple[Place, ...]
    on_map: tuple[OnMap, ...]

    @property
    def spatial(self) -> bool:
        """False once every spatial axis was pooled away, reduced or mixed."""
        return any(p is not None for p in self.places)


def make_rf(extent: Sequence[float], jump: Sequence[float], start: Sequence[float]) -> RF:
    """An RF from (possibly fractional) extents; ``size`` rounds up to whole pixels.

    A jump of 0 or less (the copies of one unit after a 1 -> 7 pool, a cat whose pieces run backwards)
    has no infinite-grid pattern: every unit gets the one span (such an axis takes its sizes from the map).
    """
    size = tuple(max(1, math.ceil(e - _EPS)) for e in extent)
    sups = tuple(
        _support.from_recurrence(n, j, st) if j > 0 else AxisSupport(1, 0, (_centred(n, st),))
        for n, j, st in zip(size, jump, start)
    )
    return RF(size, tuple(float(j) for j in jump), tuple(float(s) for s in start), sups)


def _centred(size: int, centre: float) -> Span:
    """``size`` pixels centred at ``centre``."""
    first = math.floor(centre - (size - 1) / 2)
    return first, first + size - 1


def clean_axis(place: Place, shape: tuple[int, ...]) -> bool:
    """The axis is a whole tensor axis of its own (not merged with others by a flatten)."""
    return place is not None and place[1] == 1 and place[0] < len(shape) and shape[place[0]] == place[2]


def edit_axes(rf: RF, axes: Sequence[int], fn: Any) -> RF:
    """Apply ``fn`` (an RF -> RF function) to the spatial ``axes`` of ``rf`` alone, in that order."""
    sups = list(rf.supports())
    sub = RF(
        tuple(rf.size[a] for a in axes),
        tuple(rf.jump[a] for a in axes),
        tuple(rf.start[a] for a in axes),
        tuple(sups[a] for a in axes),
    )
    out = fn(sub)
    size, jump, start = list(rf.size), list(rf.jump), list(rf.start)
    for i, a in enumerate(axes):
        size[a], jump[a], start[a], sups[a] = out.size[i], out.jump[i], out.start[i], out.supports()[i]
    return RF(tuple(size), tuple(jump), tuple(start), tuple(sups))
