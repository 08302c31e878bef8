"""Inference benchmark of the default trained model: accuracy and batch-4 latency per backend.

Trains the default model into ``runs/bench-default`` when that run does not exist yet (``cnnlab train
--out runs/bench-default``), then measures every backend with :func:`cnnlab.bench.run_bench` (full
test split, latency at batch 4, throughput at batch 256) and, because absolute times drift on a shared
machine, the ratio ORT fp32 / eager fp32 at batch 4 timed interleaved (A B A B ...), beside its
ceiling: ONNX Runtime's own fp32 MatMul FLOP/s on this machine, measured in the same run. Writes Markdown
with the machine, versions and command to ``--out`` (default ``benchmarks/results/inference.md``).

Acceptance (issue 7): ORT fp32 at batch 4 is at least 3x faster than eager fp32, with the same accuracy
within 0.05 percentage points; the int8 path's speed and accuracy cost are reported.

    .venv/bin/python benchmarks/inference.py [--run runs/bench-default] [--threads 1] [--repeats 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from cnnlab.bench.fingerprint import cpu_flags, native_bf16
from cnnlab.bench.runner import BackendResult, BenchConfig, BenchReport, load_target, run_bench, run_compare

ROOT = Path(__file__).resolve().parents[1]
ACCURACY_TOLERANCE = 0.0005  # 0.05 percentage points
REQUIRED_SPEEDUP = 3.0


def _ensure_run(run: Path) -> None:
    if (run / "model.safetensors").is_file():
        return
    print(f"training the default model into {run} (cnnlab train --out {run}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "cnnlab", "train", "--out", str(run)], check=True, cwd=ROOT)


def _row(r: BackendResult, base: BackendResult) -> str:
    if r.status != "ok":
        return f"| {r.backend} | skipped | | | | | | {r.reason} |"
    delta = "" if r.accuracy is None or base.accuracy is None else f"{(r.accuracy - base.accuracy) * 100:+.2f}"
    assert r.latency is not None and base.latency is not None and r.throughput is not None
    speed = base.latency.median_ms / r.latency.median_ms
    mem = "-" if r.peak_memory is None or r.peak_memory.bytes is None else f"{r.peak_memory.bytes / 2**20:.0f}"
    acc = "-" if r.accuracy is None else f"{r.accuracy * 100:.2f}"
    return (f"| {r.backend} | {acc} | {delta} | {r.latency.median_ms:.3f} | {r.latency.p90_ms:.3f} | {r.latency.n} | "
            f"{r.throughput:,.0f} | {mem} | {speed:.2f}x | {'; '.join(r.notes)} |")  # fmt: skip


def ort_matmul_peak(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of ONNX Runtime's own fp32 ``MatMul`` (n x n by n x n) at ``threads``: the ceiling the ORT
    backend can reach on this machine, measured in the same run (median of ``repeats`` calls)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.random((n, n), dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = rng.random((n, n), dtype=np.float32)
    times = []
    for i in range(repeats + 3):  # 3 warm-up calls
        start = time.perf_counter()
        session.run(None, {"a": x})
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-default", help="run directory of the trained default model")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (torch and ONNX Runtime)")
    parser.add_argument("--repeats", type=int, default=300, help="timed batch-4 calls per backend and pairs")
    parser.add_argument("--backend", default="all", help="backends for the table (default all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference.md"))
    args = parser.parse_args()

    run = Path(args.run)
    _ensure_run(run)
    started = time.perf_counter()
    from cnnlab.bench.backends import parse_backends

    cfg = BenchConfig(backends=tuple(parse_backends(args.backend)), threads=args.threads, repeats=args.repeats,
                      warmup=20)  # fmt: skip
    target = load_target(str(run))
    report: BenchReport = run_bench(target, cfg, log=lambda m: print(m, flush=True))
    ok = {r.backend: r for r in report.results if r.status == "ok"}
    pairs = {}
    for a, b in (("eager", "ort"), ("eager", "channels_last"), ("ort", "ort-int8")):
        if a in ok and b in ok:
            print(f"interleaved {a} vs {b} ...", flush=True)
            pairs[(a, b)] = run_compare(target, target, a, b, cfg)
    peak = ort_matmul_peak(cfg.threads) if "ort" in ok else float("nan")
    elapsed = time.perf_counter() - started

    base = ok["eager"]
    fp, versions = report.fingerprint, report.versions
    metrics_file = run / "metrics.json"
    trained = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    flags = cpu_flags()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    lines = [
        "# Inference benchmark: default trained model, per backend",
        "",
        f"Command: `.venv/bin/python benchmarks/inference.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
        "",
        "## Machine and software",
        "",
        f"- machine fingerprint `{fp.machine}`: {fp.cpu_model}, {fp.cpu_count} logical cores, GPU: {fp.gpu}, "
        f"{platform.system()} {platform.machine()}",
        f"- CPU flags: {', '.join(isa)}; bf16: {native_bf16()[1]}",
        f"- torch reports CPU capability {torch.backends.cpu.get_cpu_capability()}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}",
        f"- threads: {cfg.threads} (torch.set_num_threads and ORT intra_op_num_threads; inter-op 1)",
        "- the machine is shared with other jobs (2 cores), so absolute times drift; the interleaved ratios are "
        "the robust numbers",
        "",
        "## Model",
        "",
        f"- run `{run}`: {report.model}, trained with recipe `{trained.get('recipe', '?')}` for "
        f"{trained.get('epochs', '?')} epochs, test accuracy recorded by train {trained.get('test_accuracy', '?')} "
        f"(train evaluates in its own precision: {trained.get('precision', '?')}; the bench rows below are measured "
        "here through each backend)",
        f"- checkpoint sha256 `{report.sha256}` (verified against model.json before measuring)",
        f"- params {report.params:,}, MACs {report.macs:,} per image (cnnlab.analysis)",
        f"- accuracy on the full {report.dataset} test split ({report.test_images:,} images) through each backend",
        "",
        f"## Per backend (latency at batch {cfg.batch_size}: median / p90 over n calls after {cfg.warmup} warm-up; "
        f"throughput at batch {cfg.throughput_batch})",
        "",
        "| backend | accuracy % | vs eager (points) | median ms | p90 ms | n | img/s | peak MiB | speedup vs eager "
        "(sequential) | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[_row(r, base) for r in report.results],
        "",
        "Peak MiB: growth of the process's resident set while the backend was prepared and run (weights copy, "
        "runtime arenas, the 500-image accuracy batches).",
        "",
        f"## Interleaved ratios at batch {cfg.batch_size} (A B A B ..., {cfg.repeats} pairs)",
        "",
        "| A | B | median time(A)/time(B) | p10 | p90 | A median ms | B median ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for (a, b), res in pairs.items():
        d = res.to_dict()
        lines.append(f"| {a} | {b} | {d['median_ratio']:.2f} | {d['p10_ratio']:.2f} | {d['p90_ratio']:.2f} | "
                     f"{d['latency_a']['median_ms']:.3f} | {d['latency_b']['median_ms']:.3f} |")  # fmt: skip
    lines += ["", "## Acceptance", ""]
    if ("eager", "ort") in pairs:
        ratio = pairs[("eager", "ort")].median_ratio
        acc_ort, acc_eager = ok["ort"].accuracy, base.accuracy
        gap = abs(acc_ort - acc_eager) if acc_ort is not None and acc_eager is not None else float("nan")
        verdict = "PASS" if ratio >= REQUIRED_SPEEDUP and gap <= ACCURACY_TOLERANCE else "FAIL"
        lines.append(
            f"- ORT fp32 vs eager fp32 at batch 4: {ratio:.2f}x faster (interleaved median; required "
            f">= {REQUIRED_SPEEDUP:.0f}x); accuracy gap {gap * 100:.3f} points (allowed 0.05): **{verdict}**"
        )
        flop = 2 * report.macs * cfg.batch_size  # one batch-4 call
        eager_ms, ort_ms = (pairs[("eager", "ort")].latency(w).median_ms for w in ("a", "b"))
        lines.append(
            f"- the ceiling: ORT fp32 runs a batch-{cfg.batch_size} call ({flop / 1e6:.1f} MFLOP, MACs x 2) at "
            f"{flop / ort_ms / 1e6:.0f} GFLOP/s, {flop / (ort_ms / 1e3) / peak:.0%} of ONNX Runtime's own fp32 "
            f"MatMul peak measured in this run ({peak / 1e9:.0f} GFLOP/s, 1024x1024 at {cfg.threads} thread(s)); "
            f"even at that peak ({flop / peak * 1e3:.3f} ms a call) ORT could be at most "
            f"{eager_ms / (flop / peak * 1e3):.2f}x faster than eager's {eager_ms:.3f} ms"
        )
    if "ort-int8" in ok and "ort" in ok:
        i8 = ok["ort-int8"]
        fp32_acc = ok["ort"].accuracy
        cost = (i8.accuracy - fp32_acc) * 100 if i8.accuracy is not None and fp32_acc is not None else float("nan")
        r = pairs.get(("ort", "ort-int8"))
        lines.append(
            f"- ORT int8 vs ORT fp32: accuracy {cost:+.2f} points; batch-4 latency ratio "
            f"time(fp32)/time(int8) = {r.median_ratio if r else float('nan'):.2f}; throughput "
            f"{i8.throughput:,.0f} vs {ok['ort'].throughput:,.0f} img/s at batch {cfg.throughput_batch}"
        )
    lines += ["", f"Total benchmark time {elapsed:.0f} s.", ""]
    text = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
