"""``cnnlab bench``: accuracy on the full test split and latency at batch size 4, per inference backend.

``cnnlab bench RUN`` verifies the checkpoint's sha256, scores the whole test split through every
selected backend (so each backend's accuracy cost is visible) and times ``--repeats`` calls at
``--batch-size`` (default 4, the seed's leaderboard rule). ``--record`` adds one row per backend to
the leaderboard. ``--compare A B`` times two backends (or two checkpoints) interleaved and prints the
ratio of every pair and its median.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NAME = "bench"
BACKEND_DEFAULT = "eager,ort"
HELP = "Measure accuracy and inference speed (batch 4) of a run or model per backend; --record to the leaderboard."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", help="run directory, .safetensors file, or registered model name")
    parser.add_argument("--batch-size", type=int, default=4, help="latency batch size (default 4, the seed's rule)")
    parser.add_argument(
        "--backend", default=BACKEND_DEFAULT,
        help="comma list of eager, channels_last, bf16, compile, ort, ort-int8, or 'all' (default eager,ort)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, torch and ONNX Runtime (default 1)")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per backend after warm-up (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed warm-up calls (default 10)")
    parser.add_argument("--throughput-batch", type=int, default=256, help="batch size for images/second (default 256)")
    parser.add_argument("--throughput-seconds", type=float, default=1.0,
                        help="minimum seconds spent measuring throughput (default 1.0)")  # fmt: skip
    parser.add_argument("--input", help="C,H,W input size for a registered model (default: the model's own)")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument("--record", action="store_true", help="add the results to the leaderboard")
    parser.add_argument("--db", help="leaderboard database file (default: the user data directory)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="time two backends (with TARGET) or two checkpoints interleaved: A B A B ...")  # fmt: skip
    parser.add_argument("--format", choices=["text", "json"], default="text", help="output format (default text)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.bench.backends import BACKENDS, parse_backends
    from cnnlab.bench.runner import BenchConfig

    backends = parse_backends(args.backend)
    cfg = BenchConfig(
        backends=tuple(backends), batch_size=args.batch_size, threads=args.threads, repeats=args.repeats,
        warmup=args.warmup, throughput_batch=args.throughput_batch, throughput_seconds=args.throughput_seconds,
        data_dir=args.data_dir,
    )  # fmt: skip
    input_size = None
    if args.input:
        from cnnlab.analysis import check_input_shape

        input_size = check_input_shape(args.input)
        from cnnlab.bench.runner import names_checkpoint

        sides = [t for t in (args.target, *(args.compare or ())) if t and t not in BACKENDS]
        checkpoints = [t for t in sides if names_checkpoint(t)]
        if checkpoints:
            raise ValueError(
                f"--input {args.input} applies only to a registered model name (an untrained model, timed at "
                f"that size); {checkpoints[0]!r} is a run, whose input size is recorded in its model.json and "
                "scored on its dataset. Leave --input out for runs."
            )
    if args.compare:
        if args.record:
            raise ValueError(
                "--record cannot be combined with --compare: a comparison gives ratios, not leaderboard rows. "
                "Run `cnnlab bench RUN --record` for each side instead."
            )
        return _compare(args, cfg, input_size, BACKENDS)
    if not args.target:
        raise ValueError(
            "cnnlab bench needs TARGET (a run directory, a .safetensors file or a registered model name), or "
            "--compare A B; received neither. Example: cnnlab bench runs/latest --backend eager,ort."
        )
    return _bench(args, cfg, input_size)


def _bench(args: argparse.Namespace, cfg: Any, input_size: tuple[int, ...] | None) -> int:
    from cnnlab.bench.leaderboard import Leaderboard
    from cnnlab.bench.runner import load_target, run_bench

    target = load_target(args.target, input_size)  # a tampered checkpoint stops here: nothing is recorded
    board = Leaderboard(args.db) if args.record else None
    if board is not None:
        board.open_for_writing()  # a bad --db fails now, not after minutes of measurement
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.format == "text" else None
    report = run_bench(target, cfg, log=log)
    recorded: list[int] = []
    if board is not None:
        rows = report.leaderboard_rows()
        if not rows:
            raise ValueError(
                f"--record: no backend ran for {target.source}, so there is nothing to record; see the reasons "
                "above and choose other backends with --backend."
            )
        recorded = board.record_many(rows)
    if args.format == "json":
        out = report.to_dict()
        out["recorded"] = {"db": str(board.path), "ids": recorded} if board is not None else None
        print(json.dumps(out, indent=2))
    else:
        print(_text(report))
        if board is not None:
            print(f"recorded {len(recorded)} rows into {board.path}")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# what "vs <base>" compares, per task: the first of the task's score columns (cnnlab.bench.leaderboard.TASK_SCORES)
_SCORE_WORDS = {
    "classification": "test accuracy", "segmentation": "pixel accuracy", "reconstruction": "MSE (lower is better)",
}  # fmt: skip


def _metric(result: Any, key: str) -> float | None:
    """A backend's score under a TASK_SCORES key: ``accuracy`` (pixel accuracy for segmentation) or ``metrics.K``."""
    value = result.metrics.get(key.removeprefix("metrics.")) if key.startswith("metrics.") else result.accuracy
    return None if value is None else float(value)


def _no_negative_zero(value: float, spec: str) -> float:
    # a difference that rounds to zero prints as +0.0000, not -0.0000
    return 0.0 if float(format(value, spec)) == 0 else value


def _text(report: Any) -> str:
    cfg, fp = report.config, report.fingerprint
    sha = f", sha256 {report.sha256[:12]}..." if report.sha256 else ""
    source = report.init_from_sha256  # a fine-tuned checkpoint: say which weights it started from
    if source:
        sha += f", fine-tuned from {source[:12]}" + ("..." if source != "unknown" else "")
    size = "x".join(str(v) for v in report.input_size)
    data = (f"on the {report.dataset} test split ({report.test_images:,} images of {size}, data sha256 "
            f"{(report.data_sha256 or '')[:12]}...)" if report.dataset
            else f"speed only (untrained model, no dataset) on random {size} inputs")  # fmt: skip
    runtime = ", ".join(f"{k} {v}" for k, v in report.versions.items() if k in ("cnnlab", "torch", "onnxruntime"))
    macs = "-" if report.macs is None else f"{report.macs / 1e6:.2f} M"
    params = "-" if report.params is None else f"{report.params:,}"
    lines = [
        f"cnnlab bench: {report.model} ({report.target}{sha}) {data}",
        f"machine {fp.machine}: {fp.describe()}; {runtime}; threads {cfg.threads}",
        f"params {params}, MACs {macs} per image; latency at batch {cfg.batch_size}: median and p90 over "
        f"n={cfg.repeats} calls after {cfg.warmup} warm-up; throughput at batch {cfg.throughput_batch}",
        "",
    ]
    ok = [r for r in report.results if r.status == "ok"]
    base = next((r for r in ok if r.backend == "eager"), ok[0] if ok else None)
    # the task's own score: accuracy, pixel accuracy (+ mean IoU) for segmentation, MSE for reconstruction
    from cnnlab.bench.leaderboard import TASK_SCORES

    task = report.task if report.dataset and report.task in TASK_SCORES else "classification"
    scores = TASK_SCORES[task][0]
    header = ["backend", *(label for label, _, _ in scores), "vs " + (base.backend if base else "-"), "median ms",
              "p90 ms", "n", "img/s", "peak MiB", "speedup"]  # fmt: skip
    table = [header]
    for r in ok:
        values = [_metric(r, key) for _, key, _ in scores]
        first = _metric(base, scores[0][1]) if base is not None else None
        delta = None if values[0] is None or first is None else _no_negative_zero(values[0] - first, scores[0][2])
        speed = None if base is None or base.latency is None else base.latency.median_ms / r.latency.median_ms
        mem = None if r.peak_memory is None or r.peak_memory.bytes is None else r.peak_memory.bytes / 2**20
        table.append([
            r.backend, *(_fmt(v, spec) for v, (_, _, spec) in zip(values, scores)),
            _fmt(delta, "+" + scores[0][2]), _fmt(r.latency.median_ms, ".3f"),
            _fmt(r.latency.p90_ms, ".3f"), str(r.latency.n), _fmt(r.throughput, ",.0f"), _fmt(mem, ".1f"),
            _fmt(speed, ".2f") + ("x" if speed is not None else ""),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    if base is not None and len(ok) > 1:
        lines.append(f"(vs {base.backend} = the backend's {_SCORE_WORDS[task]} minus that of {base.backend}; "
                     f"speedup = median latency of {base.backend} / median latency of the backend, measured one "
                     "backend after the other; use --compare A B for an interleaved ratio)")  # fmt: skip
    if report.dataset and report.task == "segmentation":
        lines.append("pixel acc = share of the test pixels whose class is right; mean IoU = intersection over union "
                     "of each class's predicted and true pixels, averaged over the classes present")  # fmt: skip
    if report.dataset and report.task == "reconstruction":
        lines.append(
            "MSE = mean squared error per pixel between the output and the input, both normalised as "
            "the model sees them ((x - mean) / std); lower is better; a reconstruction has no accuracy"
        )
    for r in ok:
        for note in r.notes:
            lines.append(f"note: {r.backend}: {note}")
    for r in report.results:
        if r.status != "ok":
            lines.append(f"skipped {r.backend}: {r.reason}")
    rec = report.recorded
    said = _recorded_score(report.task, rec)
    if said:
        limit = rec.get("limit_test")  # a limit at or above the split's size took the whole split
        subset = f"its first {limit:,} test images" if limit and limit < report.test_images else "the test split"
        how = [part for part, on in (("averaging each image with its mirror (flip TTA)", rec.get("tta_flip")),
                                     (f"in {rec.get('precision')}", rec.get("precision") not in (None, "fp32")))
               if on]  # fmt: skip
        why = (f", {' and '.join(how)}; bench's eager row scores each image once in fp32, so the two can differ"
               if how else "")  # fmt: skip
        lines.append(f"cnnlab train recorded {said} on {subset} for this run{why}")
    return "\n".join(lines)


def _recorded_score(task: str, rec: dict[str, Any]) -> str:
    """What `cnnlab train` recorded, in the task's own terms ('' when it recorded no score)."""
    if task == "reconstruction":
        return "" if rec.get("test_mse") is None else f"test MSE {rec['test_mse']:.6f}"
    if rec.get("test_accuracy") is None:
        return ""
    if task == "segmentation":
        iou = "" if rec.get("test_mean_iou") is None else f", mean IoU {rec['test_mean_iou']:.4f}"
        return f"test pixel accuracy {rec['test_accuracy']:.4f}{iou}"
    return f"test accuracy {rec['test_accuracy']:.4f}"


def _compare(args: argparse.Namespace, cfg: Any, input_size: tuple[int, ...] | None, backends: tuple[str, ...]) -> int:
    from cnnlab.bench.runner import load_target, run_compare

    a, b = args.compare
    if a in backends and b in backends:
        if not args.target:
            raise ValueError(
                f"--compare {a} {b} compares two backends, so it needs TARGET (the run or model to run on both); "
                f"received none. Example: cnnlab bench runs/latest --compare {a} {b}."
            )
        target = load_target(args.target, input_size)
        result = run_compare(target, target, a, b, cfg)
        source = target.source
    else:
        if args.target:
            raise ValueError(
                f"--compare {a} {b}: with TARGET given, A and B must both be backends ({', '.join(backends)}); "
                "to compare two checkpoints leave TARGET out: cnnlab bench --compare RUN_A RUN_B --backend ort."
            )
        if len(cfg.backends) != 1:
            given = "the default --backend" if args.backend == BACKEND_DEFAULT else "--backend"
            raise ValueError(
                f"--compare of two checkpoints runs both on one backend; {given} {args.backend} names "
                f"{len(cfg.backends)}. Pass a single one, e.g. --backend ort."
            )
        ta, tb = load_target(a, input_size), load_target(b, input_size)
        result = run_compare(ta, tb, cfg.backends[0], cfg.backends[0], cfg)
        source = f"{ta.source} vs {tb.source}"
    if args.format == "json":
        out = result.to_dict()
        out.update(target=source, batch_size=cfg.batch_size, threads=cfg.threads)
        print(json.dumps(out, indent=2))
        return 0
    la, lb = result.latency("a"), result.latency("b")
    print(f"cnnlab bench --compare: {source}; batch {cfg.batch_size}, threads {cfg.threads}, {result.n} interleaved "
          f"pairs after {cfg.warmup} warm-up")  # fmt: skip
    print(f"  {result.label_a}: median {la.median_ms:.3f} ms, p90 {la.p90_ms:.3f} ms")
    print(f"  {result.label_b}: median {lb.median_ms:.3f} ms, p90 {lb.p90_ms:.3f} ms")
    print(f"ratio time({result.label_a}) / time({result.label_b}) per pair:")
    ratios = [f"{r:.2f}" for r in result.ratios]
    for lo in range(0, len(ratios), 12):
        print("  " + " ".join(ratios[lo : lo + 12]))
    print(result.summary())
    return 0
