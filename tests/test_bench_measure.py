"""cnnlab.bench timing, interleaving, memory, fingerprint and backend-name helpers (no model needed)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cnnlab.bench.backends import BACKENDS, parse_backends, unsupported_operator
from cnnlab.bench.compare import interleaved
from cnnlab.bench.fingerprint import machine_fingerprint, native_bf16
from cnnlab.bench.measure import MemoryWatch, percentile, stats_from_times, throughput, time_calls


@pytest.mark.parametrize("q", [0, 10, 50, 90, 100])
def test_percentile_matches_numpy(q):
    values = list(np.random.default_rng(q).exponential(size=37))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-9)


def test_percentile_rejects_empty_and_bad_q():
    with pytest.raises(ValueError, match="values must not be empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"q must be within 0\.\.100; received q=101"):
        percentile([1.0], 101)


def test_time_calls_counts_warmup_apart_and_orders_stats():
    calls = []
    stats = time_calls(lambda: calls.append(1), repeats=25, warmup=5)
    assert len(calls) == 30 and stats.n == 25 and stats.warmup == 5
    assert stats.min_ms <= stats.median_ms <= stats.p90_ms


def test_stats_from_times_in_milliseconds():
    s = stats_from_times([0.001, 0.002, 0.003, 0.004, 0.010])
    assert s.median_ms == pytest.approx(3.0) and s.p90_ms == pytest.approx(7.6) and s.n == 5


def test_time_calls_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_calls(lambda: None, repeats=0, warmup=0)


def test_throughput_is_batch_over_time():
    ips = throughput(lambda: time.sleep(0.01), 4, min_seconds=0.05, min_calls=3)
    assert 100 < ips < 400  # 4 images per ~10 ms call


def test_interleaved_alternates_and_ratios_follow_times():
    order: list[str] = []
    result = interleaved(
        lambda: (order.append("a"), time.sleep(0.004)),
        lambda: (order.append("b"), time.sleep(0.001)),
        repeats=6,
        warmup=1,
        label_a="slow",
        label_b="fast",
    )
    assert order == ["a", "b"] * 7  # one warm-up pair, then A B A B ...
    assert result.n == 6 and len(result.ratios) == 6
    assert result.ratios == pytest.approx([a / b for a, b in zip(result.times_a, result.times_b)])
    assert result.median_ratio > 1.5
    assert "fast is" in result.summary() and "faster than slow" in result.summary()


def test_memory_watch_sees_a_large_allocation():
    with MemoryWatch() as watch:
        block = bytearray(48 << 20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    if watch.result.bytes is None:
        pytest.skip(watch.result.method)
    assert watch.result.bytes >= 40 << 20
    del block


def test_fingerprint_is_stable_and_distinguishes_hardware():
    a = machine_fingerprint(cpu_model="CPU X", cpu_count=8, gpu="none")
    assert a == machine_fingerprint(cpu_model="CPU X", cpu_count=8, gpu="none")
    assert a.machine != machine_fingerprint(cpu_model="CPU X", cpu_count=16, gpu="none").machine
    assert a.machine != machine_fingerprint(cpu_model="CPU X", cpu_count=8, gpu="NVIDIA H200").machine
    here = machine_fingerprint()
    assert here.cpu_count >= 1 and here.cpu_model and len(here.machine) == 12


def test_native_bf16_needs_the_instructions():
    ok, reason = native_bf16(frozenset({"avx2", "fma"}))
    assert not ok and "avx512_bf16" in reason and "emulated" in reason
    assert native_bf16(frozenset({"amx_bf16"}))[0]


def test_parse_backends():
    assert parse_backends("all") == list(BACKENDS)
    assert parse_backends("ort, eager,ort") == ["ort", "eager"]
    with pytest.raises(ValueError, match=r"--backend must be .* received 'eager,tensorrt' with unknown \['tensorrt'\]"):
        parse_backends("eager,tensorrt")


def test_unsupported_operator_from_exporter_messages():
    msg = "DispatchError: No ONNX function found for <OpOverload(op='mylib.weird', overload='default')>."
    assert unsupported_operator(msg) == "mylib.weird.default"
    assert unsupported_operator("Unsupported: ONNX export of operator aten::unique_dim") == "aten::unique_dim"
    assert unsupported_operator("something else went wrong") is None
