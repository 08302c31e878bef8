"""Two things timed interleaved (A B A B ...) in one run, so slow drifts of the machine hit both alike.

Absolute times on a shared machine wander by tens of percent from one minute to the next; the ratio
of two calls made back to back does not. ``ratio = time(A) / time(B)``: above 1 means B is faster.

>>> r = interleaved(lambda: sum(range(2000)), lambda: sum(range(10)), repeats=30, warmup=3)
>>> r.n, r.median_ratio > 1
(30, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnnlab.bench.measure import LatencyStats, percentile, stats_from_times

__all__ = ["CompareResult", "interleaved"]


@dataclass(frozen=True)
class CompareResult:
    """Per-pair times (seconds) of ``a`` and ``b`` and their ratios ``time(a) / time(b)``."""

    label_a: str
    label_b: str
    times_a: list[float]
    times_b: list[float]

    @property
    def ratios(self) -> list[float]:
        return [a / b if b > 0 else float("inf") for a, b in zip(self.times_a, self.times_b)]

    @property
    def n(self) -> int:
        return len(self.times_a)

    @property
    def median_ratio(self) -> float:
        return percentile(self.ratios, 50)

    def latency(self, which: str) -> LatencyStats:
        """Latency statistics of ``"a"`` or ``"b"`` alone."""
        return stats_from_times(self.times_a if which == "a" else self.times_b)

    def summary(self) -> str:
        r = self.median_ratio
        faster, slower, factor = (self.label_b, self.label_a, r) if r >= 1 else (self.label_a, self.label_b, 1 / r)
        return (
            f"median ratio time({self.label_a}) / time({self.label_b}) = {r:.3f} over {self.n} interleaved pairs "
            f"(p10 {percentile(self.ratios, 10):.3f}, p90 {percentile(self.ratios, 90):.3f}): "
            f"{faster} is {factor:.2f}x faster than {slower}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.label_a,
            "b": self.label_b,
            "n": self.n,
            "median_ratio": self.median_ratio,
            "p10_ratio": percentile(self.ratios, 10),
            "p90_ratio": percentile(self.ratios, 90),
            "ratios": self.ratios,
            "latency_a": self.latency("a").to_dict(),
            "latency_b": self.latency("b").to_dict(),
        }


def interleaved(
    fa: Callable[[], object],
    fb: Callable[[], object],
    *,
    repeats: int,
    warmup: int,
    label_a: str = "A",
    label_b: str = "B",
) -> CompareResult:
    """Warm both up, then time ``fa`` and ``fb`` alternately ``repeats`` times each (A B A B ...)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"repeats must be >= 1 and warmup >= 0; received repeats={repeats}, warmup={warmup}. "
            "Use for example --repeats 100."
        )
    for _ in range(warmup):
        fa()
        fb()
    times_a, times_b = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fa()
        mid = time.perf_counter()
        fb()
        end = time.perf_counter()
        times_a.append(mid - start)
        times_b.append(end - mid)
    return CompareResult(label_a, label_b, times_a, times_b)
