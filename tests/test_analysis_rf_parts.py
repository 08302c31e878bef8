"""Repeated spatial cats: the parts of the joined map stay few, or the fields are honestly not followed.

Each spatial cat keeps every piece as a part of its own (:mod:`cnnlab.analysis.seams`). Without compaction
the parts doubled at every cat (a crop kept the parts it cut away, parts reaching the same units were never
merged): 12 cats of two halves took seconds and 30 ran for more than ten minutes.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from cnnlab.analysis import analyze
from cnnlab.analysis.capture import capture
from cnnlab.analysis.receptive import propagate


class _SwapHalves(nn.Module):
    """``x = cat([conv(x[..., w:]), conv(x[..., :w])], 3)``, ``n`` times: the halves swap at every step."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3, 3, 3, padding=1) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            w = x.shape[-1] // 2
            x = torch.cat([conv(x[..., w:]), conv(x[..., :w])], 3)
        return x


class _CatPool(nn.Module):
    """Two branches of one map joined along W, then a (1, 2) pool: W stays the same, ``n`` times."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.a = nn.ModuleList([nn.Conv2d(3, 3, 3, padding=1) for _ in range(n)])
        self.b = nn.ModuleList([nn.Conv2d(3, 3, 1) for _ in range(n)])
        self.pool = nn.AvgPool2d((1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for a, b in zip(self.a, self.b):
            x = self.pool(torch.cat([a(x), b(x)], 3))
        return x


class _Strips(nn.Module):
    """``k`` column strips, a conv each, joined along W; then ``k`` row strips of that, joined along H."""

    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.k, self.w = k, n // k
        self.c, self.d = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w
        x = torch.cat([self.c(x[..., i * w : (i + 1) * w]) for i in range(self.k)], 3)
        return torch.cat([self.d(x[..., i * w : (i + 1) * w, :]) for i in range(self.k)], 2)


def _parts(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Most parts any node's joined map holds."""
    states, _ = propagate(capture(model, shape))
    return max(len(parts) for s in states if s is not None for both in s.on_map if both is not None for parts in both)


def _last(model: nn.Module, shape: tuple[int, ...]) -> tuple[object, object]:
    row = analyze(model, shape).layers[-1]
    return (None if row.rf is None else row.rf.size), row.rf_min


def test_swapped_halves_keep_few_parts() -> None:
    # a crop keeps only the parts that still reach a unit; parts that reach the same units are one
    assert _parts(_SwapHalves(12), (3, 33, 47)) <= 64  # was 4096 (2 ** 12)


def test_compaction_keeps_the_fields() -> None:
    # the same sizes as before compaction (6 cats, where the old path still finished)
    assert _last(_SwapHalves(6), (3, 9, 17)) == ((11, 19), (11, 3))
    assert _last(_CatPool(6), (3, 8, 32)) == ((10, 34), (1, 32))


def test_thirty_cats_finish_quickly() -> None:
    t0 = time.perf_counter()
    assert _last(_SwapHalves(30), (3, 33, 47)) == ((35, 49), (35, 3))
    _last(_CatPool(30), (3, 16, 32))
    assert time.perf_counter() - t0 < 5  # ran for more than ten minutes; about 1 s now


def test_too_many_pieces_are_not_followed() -> None:
    # 32 x 32 strips: 1024 pieces that share no grid, more than cnnlab follows: rf-unknown, quickly
    t0 = time.perf_counter()
    report = analyze(_Strips(32, 64), (3, 64, 64))
    assert time.perf_counter() - t0 < 5
    assert report.layers[-1].rf is None
    (note,) = [w for w in report.warnings if w.rule == "rf-unknown"]
    assert note.level == "info" and "1024 pieces" in note.message
    assert _last(_Strips(8, 64), (3, 64, 64)) == ((5, 5), (5, 5))  # 64 pieces: followed exactly
