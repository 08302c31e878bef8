"""Timing done as an experiment: warm up, then time each call; report n, median and the 90th percentile.

Nothing here knows about models: a measurement takes a callable. Peak memory on a CPU is the growth
of the process's resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` before the
run); on CUDA it is ``torch.cuda.max_memory_allocated``.

>>> stats = time_calls(lambda: sum(range(100)), repeats=20, warmup=2)
>>> stats.n, stats.median_ms <= stats.p90_ms
(20, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["LatencyStats", "MemoryWatch", "PeakMemory", "percentile", "stats_from_times", "throughput", "time_calls"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency of ``n`` timed calls after ``warmup`` untimed ones, in milliseconds."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    n: int
    warmup: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics (NumPy's default).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 90)
    (2.5, 3.7)
    """
    if not values:
        raise ValueError("percentile: values must not be empty; time at least one call (repeats >= 1).")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be within 0..100; received q={q}.")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100  # fractional rank
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 12)


def stats_from_times(seconds: Sequence[float], warmup: int = 0) -> LatencyStats:
    """:class:`LatencyStats` of per-call durations given in seconds."""
    ms = [s * 1e3 for s in seconds]
    return LatencyStats(
        median_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        min_ms=min(ms),
        mean_ms=sum(ms) / len(ms),
        n=len(ms),
        warmup=warmup,
    )


def _check_counts(repeats: int, warmup: int) -> None:
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"repeats must be >= 1 and warmup >= 0; received repeats={repeats}, warmup={warmup}. "
            "Use for example --repeats 100."
        )


def time_calls(fn: Callable[[], object], *, repeats: int, warmup: int) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed one by one."""
    _check_counts(repeats, warmup)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return stats_from_times(times, warmup)


def throughput(fn: Callable[[], object], batch: int, *, min_seconds: float = 1.0, min_calls: int = 3) -> float:
    """Images per second of ``fn`` (one call = one batch of ``batch`` images), after one warm-up call.

    Calls are repeated until both ``min_calls`` calls and ``min_seconds`` have passed.
    """
    fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return batch * calls / (time.perf_counter() - start)


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one run: ``bytes`` (None when it cannot be measured) and how it was measured."""

    bytes: int | None
    method: str


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])  # "VmHWM:   123456 kB"
    except (OSError, ValueError, IndexError):
        return None
    return None


def _malloc_trim() -> None:
    # Give memory that glibc keeps cached back to the OS, so the next high-water mark starts from what
    # is really in use (otherwise a second backend reuses the first one's freed heap and looks free).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryWatch:
    """Peak memory growth of everything done inside ``with MemoryWatch() as watch:``; then ``watch.result``.

    CPU (Linux): cached heap is trimmed, the resident-set high-water mark reset (``clear_refs`` 5), and
    ``VmHWM`` at the end minus ``VmRSS`` at the start is the growth of the process: weights copies,
    runtime arenas and activations of the largest batch. CUDA: ``max_memory_allocated`` growth.
    Elsewhere: ``bytes`` is None and ``method`` says why.

    >>> with MemoryWatch() as watch:
    ...     block = bytearray(64 << 20)
    >>> watch.result.bytes is None or watch.result.bytes >= 32 << 20
    True
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.result = PeakMemory(None, "not measured yet")
        self._before: int | None = None

    def __enter__(self) -> MemoryWatch:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._before = torch.cuda.memory_allocated()
            return self
        _malloc_trim()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self._before = None
            return self
        kib = _status_kib("VmRSS")
        self._before = None if kib is None else kib * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            grown = torch.cuda.max_memory_allocated() - (self._before or 0)
            self.result = PeakMemory(int(grown), "CUDA max_memory_allocated growth")
            return
        peak = _status_kib("VmHWM")
        if self._before is None or peak is None:
            self.result = PeakMemory(None, "not measured (needs Linux /proc/self/clear_refs and /proc/self/status)")
            return
        self.result = PeakMemory(max(0, peak * 1024 - self._before), "process RSS high-water growth")
