"""Training-speed benchmark: cnnlab's recipes against PyTorch's MNIST example, side by side.

Every (recipe, seed) trains in its own spawned process on the real Fashion-MNIST, so peak memory
(``ru_maxrss``) belongs to that run alone; the runs go seed by seed (seed 0 of each recipe and of the
baseline, then seed 1, ...), so a drift in the machine's speed touches every column alike. The clock
starts before the data is loaded; after every epoch the benchmark measures test accuracy and
*removes that evaluation from the clock*. The
test accuracy is only recorded: it decides nothing (no early stop, no checkpoint choice).

Usage::

    .venv/bin/python benchmarks/train_speed.py                    # default recipe x3 seeds + baseline
    .venv/bin/python benchmarks/train_speed.py --recipes default,long --seeds 3 --baseline-epochs 6 \\
        --out benchmarks/results/train_speed.md

No test-set leakage, checked on every cnnlab run (see ``_run_cnnlab``):

1. ``val_fraction > 0``: the validation split is carved from the training split, disjoint from test;
2. ``fit()`` trains with the test split *sealed*: ``RunData.test`` is an object that raises on any
   access but ``len()`` until the last epoch has ended, so nothing during training (the per-epoch
   evaluation, checkpointing, any selection) can read a test image or label;
3. the per-epoch history that ``fit()`` records holds train and val metrics only;
4. the weights ``fit()`` reports are the final ones (EMA or raw, fixed by the config, never a chosen
   epoch): its final test accuracy must equal what the benchmark measured after the last epoch.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import resource
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TARGETS = (0.91, 0.92, 0.93)
BASELINE = "pytorch-mnist-example"
DATA = "fashion-mnist"


# -- child processes ---------------------------------------------------------------------------------


class TestSplitTouched(RuntimeError):
    """Raised by the sealed test split when training reads it."""


class _SealedSplit:
    """Stands in for ``RunData.test`` while training: only its length may be read."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getattr__(self, name: str) -> Any:
        raise TestSplitTouched(f"fit() read test split attribute {name!r} before training ended")


class _BudgetExceeded(Exception):
    pass


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def executed_flops(model: Any, input_size: tuple[int, ...], *, exclude: tuple[type, ...] = ()) -> float:
    """FLOPs per image that one training step of ``model`` really runs (forward and backward).

    torch's ``FlopCounterMode`` over one pass of a copy of ``model`` in training mode (batch 2): it
    sees the gradients autograd skips (a frozen stem), the rows ``MatmulGradConv2d(pooled=True)``
    does not compute, and MatmulGradConv2d's im2col matmuls. Modules of the types in ``exclude``
    (e.g. ``nn.Linear``: the head) are left out.
    """
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model).train()
    batch = 2
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(batch, *input_size)).sum().backward()
    counts = counter.get_flop_counts()
    left_out = [f"{type(net).__name__}.{n}" for n, m in net.named_modules() if n and isinstance(m, exclude)]
    total = sum(counts["Global"].values()) - sum(sum(counts.get(k, {}).values()) for k in left_out)
    return float(total) / batch


def _run_cnnlab(recipe: str, seed: int, threads: int, budget: float) -> dict[str, Any]:
    import torch

    from cnnlab.analysis import analyze
    from cnnlab.train.distributed import DistInfo
    from cnnlab.train.loop import Env, Hooks, evaluate, fit
    from cnnlab.train.recipes import resolve_recipe
    from cnnlab.train.setup import load_data
    from cnnlab.train.tricks import resolve_device, resolve_precision

    cfg = resolve_recipe(recipe, {"seed": seed, "threads": threads, "progress": "none", "data": DATA})
    # Check 1: validation split exists (decisions can only read it).
    assert cfg.val_fraction > 0, f"recipe {recipe!r} has val_fraction={cfg.val_fraction}: no validation split"
    t0 = time.perf_counter()
    excluded = 0.0  # seconds spent on the benchmark's own test evaluations (off the clock)
    data = load_data(cfg)
    real_test = data.test
    assert len(data.val) > 0 and len(real_test) > 0, "empty validation or test split"
    data.test = _SealedSplit(len(real_test))  # type: ignore[assignment]  # check 2
    device = resolve_device(cfg.device)
    env = Env(device=device, precision=resolve_precision(cfg.precision, device), dist=DistInfo())
    epochs: list[dict[str, Any]] = []

    def on_epoch_end(state: Any, record: dict[str, Any]) -> None:
        nonlocal excluded
        wall = time.perf_counter() - t0 - excluded
        tick = time.perf_counter()
        test = evaluate(state.eval_model, real_test, data, cfg, env)
        excluded += time.perf_counter() - tick
        epochs.append({"epoch": record["epoch"], "wall": wall, "test_accuracy": test["accuracy"],
                       "val_accuracy": record["val_accuracy"], "eval_seconds": time.perf_counter() - tick,
                       "train_seconds": record["epoch_seconds"],
                       "images": record["images_per_second"] * record["epoch_seconds"]})  # fmt: skip
        if record["epoch"] == cfg.epochs:
            data.test = real_test  # training is over: fit() may now take its one final test measurement
        elif wall > budget:
            raise _BudgetExceeded

    stopped = False
    with tempfile.TemporaryDirectory() as out:
        try:
            result = fit(cfg, out, data=data, hooks=Hooks(on_epoch_end=[on_epoch_end]))
        except _BudgetExceeded:
            stopped, result = True, None
    wall_total = time.perf_counter() - t0 - excluded
    macs = analyze(
        __import__("cnnlab.models", fromlist=["create_model"]).create_model(cfg.model, **cfg.model_kwargs),
        (1, 28, 28),
    ).totals.macs
    out_row: dict[str, Any] = {
        "name": recipe, "seed": seed, "epochs": epochs, "stopped_by_budget": stopped, "wall_total": wall_total,
        "macs": macs, "threads": torch.get_num_threads(), "precision": env.precision,
        "config": cfg.to_dict(), "maxrss_mib": _maxrss_mib(),
    }  # fmt: skip
    if result is not None:
        m = result.metrics
        # Check 3: fit's own per-epoch records never hold a test metric.
        leaked = sorted({k for r in m["history"] for k in r if k.startswith("test")})
        assert not leaked, f"fit() history holds test metrics {leaked}"
        # Check 4: the reported weights are the last epoch's (no selection): same test accuracy.
        assert abs(m["test_accuracy"] - epochs[-1]["test_accuracy"]) < 1e-9, (m["test_accuracy"], epochs[-1])
        out_row.update(final_accuracy=m["test_accuracy"], train_seconds=m["train_seconds"],
                       images_per_second=m["images_per_second"], weights=m["weights"],
                       executed_flops=executed_flops(result.state.model, (1, 28, 28)))  # fmt: skip
    else:  # stopped by the budget: the rate over the epochs that ran (the MFU line still has a number)
        seconds = sum(e["train_seconds"] for e in epochs)
        out_row.update(final_accuracy=epochs[-1]["test_accuracy"], train_seconds=seconds,
                       images_per_second=sum(e["images"] for e in epochs) / seconds, weights="n/a")  # fmt: skip
    return out_row


def _run_baseline(seed: int, threads: int, budget: float, max_epochs: int) -> dict[str, Any]:
    import torch

    from cnnlab.data import load_dataset

    sys.path.insert(0, str(Path(__file__).parent))
    from _baseline_mnist import train_baseline  # a sibling file, found through sys.path

    t0 = time.perf_counter()
    excluded = 0.0
    train, test = load_dataset(DATA, "train"), load_dataset(DATA, "test")
    epochs: list[dict[str, Any]] = []
    stopped = False
    for epoch, predict in enumerate(train_baseline(train.images, train.labels, max_epochs, seed), start=1):
        wall = time.perf_counter() - t0 - excluded
        tick = time.perf_counter()
        accuracy = float((predict(test.images) == test.labels).float().mean())
        excluded += time.perf_counter() - tick
        epochs.append({"epoch": epoch, "wall": wall, "test_accuracy": accuracy})
        if wall > budget and epoch < max_epochs:
            stopped = True
            break
    return {
        "name": BASELINE, "seed": seed, "epochs": epochs, "stopped_by_budget": stopped,
        "wall_total": time.perf_counter() - t0 - excluded, "final_accuracy": epochs[-1]["test_accuracy"],
        "threads": torch.get_num_threads(), "precision": "fp32", "maxrss_mib": _maxrss_mib(),
    }  # fmt: skip


def _probe_peaks(threads: int) -> dict[str, Any]:
    """Measured matmul FLOP/s: fp32 at 2048^2, bf16 from 512^2 up while one call stays under 1 s.

    Each is the best of five windows of at least 0.3 s: a peak is what the cores can do, and on a
    shared (virtual) machine a window now and then runs at half speed (this benchmark once measured
    66 GFLOP/s for fp32 on an AMD EPYC whose 2048^2 matmul runs at 106-137 GFLOP/s minutes later).
    """
    import torch

    from cnnlab.train.tricks import cpu_has_native_bf16

    def rate(n: int, dtype: torch.dtype, seconds: float = 0.3, windows: int = 5) -> tuple[float, float]:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        tick = time.perf_counter()
        a @ b  # warm-up (and the time of one call)
        first = time.perf_counter() - tick
        best = 0.0
        for _ in range(1 if first > 1.0 else windows):
            reps, tick = 0, time.perf_counter()
            while reps < 1 or time.perf_counter() - tick < seconds:
                a @ b
                reps += 1
                if first > 1.0:
                    break
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - tick))
        return best, first

    fp32, _ = rate(2048, torch.float32)
    bf16, size = 0.0, 0
    for n in (512, 1024, 2048):
        flops, first = rate(n, torch.bfloat16)
        if flops > bf16:
            bf16, size = flops, n
        if first > 0.25:  # slow (emulated) bf16: stop before the probe takes minutes
            break
    return {"fp32": fp32, "bf16": bf16, "bf16_size": size, "native_bf16": cpu_has_native_bf16(),
            "threads": torch.get_num_threads()}  # fmt: skip


def interleave(groups: list[list[Any]]) -> list[Any]:
    """Seed 0 of every run, then seed 1 of every run, ...: a shared machine whose speed drifts over the
    half hour of a benchmark then slows every run alike, instead of the runs that happen to come last.

    >>> interleave([["d0", "d1", "d2"], ["l0"], ["b0", "b1"]])
    ['d0', 'l0', 'b0', 'd1', 'b1', 'd2']
    """
    longest = max((len(g) for g in groups), default=0)
    return [g[i] for i in range(longest) for g in groups if i < len(g)]


def best_peaks(probes: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest fp32 and bf16 rates over several :func:`_probe_peaks` results (``fp32_probes`` lists all).

    >>> best_peaks([{"fp32": 1.0, "bf16": 4.0, "bf16_size": 512, "native_bf16": True, "threads": 2},
    ...             {"fp32": 2.0, "bf16": 3.0, "bf16_size": 2048, "native_bf16": True, "threads": 2}])["fp32"]
    2.0
    """
    top = dict(max(probes, key=lambda p: p["bf16"]))  # keeps that probe's bf16_size
    top["fp32"] = max(p["fp32"] for p in probes)
    top["fp32_probes"] = [p["fp32"] for p in probes]
    top["bf16_probes"] = [p["bf16"] for p in probes]
    return top


def _die_with_parent() -> None:
    """On Linux, have the kernel send SIGTERM to this child when the benchmark process dies.

    A benchmark killed from outside then leaves no orphaned training run on the cores that the
    next measurement uses.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _child(job: tuple[str, str, int], threads: int, budget: float, baseline_epochs: int, queue: Any) -> None:
    _die_with_parent()
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    kind, name, seed = job
    try:
        if kind == "probe":
            row = _probe_peaks(threads)
        elif kind == "baseline":
            row = _run_baseline(seed, threads, budget, baseline_epochs)
        else:
            row = _run_cnnlab(name, seed, threads, budget)
        queue.put(row)
    except BaseException as exc:  # report it to the parent, which fails loudly
        queue.put({"error": f"{type(exc).__name__}: {exc}", "name": name, "seed": seed})
        raise


def _spawn(job: tuple[str, str, int], args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(job, args.threads, args.budget_seconds, args.baseline_epochs, queue))
    proc.start()
    try:
        row: dict[str, Any] = queue.get()
    except BaseException:  # Ctrl-C or an error here: stop the child too, it must not keep the cores busy
        proc.terminate()
        raise
    proc.join()
    if "error" in row:
        raise SystemExit(f"{job}: {row['error']}")
    return row


# -- report ------------------------------------------------------------------------------------------


def _time_to(row: dict[str, Any], target: float) -> float:
    return next((e["wall"] for e in row["epochs"] if e["test_accuracy"] >= target), math.nan)


def _mean_sd(values: list[float]) -> str:
    ok = [v for v in values if not math.isnan(v)]
    if not ok:
        return "not reached"
    text = f"{statistics.fmean(ok):.1f}" + (f" ± {statistics.stdev(ok):.1f}" if len(ok) > 1 else "")
    return text + ("" if len(ok) == len(values) else f" ({len(ok)}/{len(values)} seeds)")


def _mean_or_nan(values: list[float]) -> float:
    return statistics.fmean(values) if values and not any(math.isnan(v) for v in values) else math.nan


def _machine() -> list[str]:
    import torch

    from cnnlab.cpuinfo import cpu_description

    model = cpu_description()
    load = os.getloadavg()
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {model}, {os.cpu_count()} logical cores; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), Python {platform.python_version()}",
        f"- load average at start (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
    ]


def _report(rows: dict[str, list[dict[str, Any]]], peaks: dict[str, Any], args: argparse.Namespace,
            header: list[str]) -> list[str]:  # fmt: skip
    lines = ["# Training speed: cnnlab vs PyTorch's MNIST example on Fashion-MNIST", "", *header]
    load = os.getloadavg()
    lines += [
        f"- load average at end (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        f"- command: `{' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}`",
        f"- threads per run: {args.threads or 'torch default'}; seeds: cnnlab {args.recipes} x {args.seeds} unless "
        f"NAME:N says otherwise, baseline "
        f"{args.baseline_seeds} (baseline: at most {args.baseline_epochs} epochs); "
        f"budget {args.budget_seconds:.0f} s/run",
        "- wall time = seconds from before the data is loaded to the end of the epoch, minus the benchmark's own "
        "per-epoch test evaluation (off the clock, used for nothing but this table)",
        "",
        "| run | seeds | to 91% (s) | to 92% (s) | to 93% (s) | final test acc | epochs | wall total (s) | "
        "peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        accs = [r["final_accuracy"] for r in runs]
        acc = f"{statistics.fmean(accs):.4f}" + (f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else "")
        budget_note = " (budget hit)" if any(r["stopped_by_budget"] for r in runs) else ""
        lines.append(
            f"| {name} | {len(runs)} | "
            + " | ".join(_mean_sd([_time_to(r, t) for r in runs]) for t in TARGETS)
            + f" | {acc} | {statistics.fmean(len(r['epochs']) for r in runs):.0f}{budget_note} | "
            f"{_mean_sd([r['wall_total'] for r in runs])} | {max(r['maxrss_mib'] for r in runs):.0f} |"
        )
    lines += ["", "Per-epoch test accuracy (mean over seeds) and wall time:", ""]
    for name, runs in rows.items():
        n = min(len(r["epochs"]) for r in runs)
        cells = [
            f"{e + 1}: {statistics.fmean(r['epochs'][e]['test_accuracy'] for r in runs):.4f} @ "
            f"{statistics.fmean(r['epochs'][e]['wall'] for r in runs):.0f}s"
            for e in range(n)
        ]
        lines.append(f"- {name}: " + ", ".join(cells))
    base = rows.get(BASELINE)
    if base:
        lines += ["", "Speed-up (baseline time / cnnlab time to the same test accuracy; mean times):", ""]
        for name, runs in rows.items():
            if name == BASELINE:
                continue
            parts = []
            for t in TARGETS:
                ours, theirs = (
                    _mean_or_nan([_time_to(r, t) for r in runs]),
                    _mean_or_nan([_time_to(r, t) for r in base]),
                )
                if math.isnan(ours):
                    parts.append(f"{t:.0%}: cnnlab did not reach it in every seed")
                elif math.isnan(theirs):
                    last = max(r["epochs"][-1]["wall"] for r in base)
                    parts.append(f"{t:.0%}: baseline did not reach it within {last:.0f} s (> {last / ours:.1f}x)")
                else:
                    parts.append(f"{t:.0%}: {theirs / ours:.1f}x")
            lines.append(f"- {name}: " + "; ".join(parts))
    lines += ["", "Model FLOPs utilisation (training FLOP/s = MACs x 2 FLOP x 3 for forward+backward x images/s):", ""]
    for name, runs in rows.items():
        if name == BASELINE or math.isnan(runs[0].get("images_per_second", math.nan)):
            continue
        ips = statistics.fmean(r["images_per_second"] for r in runs)
        achieved = runs[0]["macs"] * 2 * 3 * ips
        lines.append(
            f"- {name}: {runs[0]['macs'] / 1e6:.2f} M MACs/image x {ips:.0f} images/s (optimizer steps only) = "
            f"{achieved / 1e9:.1f} GFLOP/s in {runs[0]['precision']}; that is {achieved / peaks['fp32']:.0%} of the "
            f"fp32 matmul peak and {achieved / peaks['bf16']:.0%} of the bf16 matmul peak measured below"
            + (
                ""
                if peaks["native_bf16"]
                else " (the bf16 figure means nothing here: this CPU emulates bf16, "
                "so the recipe runs in fp32 and the fp32 peak is the one to hold it against)"
            )
        )
        if "executed_flops" in runs[0]:
            run = runs[0]["executed_flops"] * ips
            peak = peaks["bf16"] if peaks["native_bf16"] and runs[0]["precision"] == "bf16" else peaks["fp32"]
            lines.append(
                f"  - the step itself runs {runs[0]['executed_flops'] / 1e6:.1f} MFLOP per image, not "
                f"{runs[0]['macs'] * 6 / 1e6:.1f} (torch's FlopCounterMode over a training step: the pooled "
                f"convolutions skip the rows their pool drops, a frozen stem needs no gradients): {run / 1e9:.1f} "
                f"GFLOP/s of executed work, {run / peak:.0%} of the {runs[0]['precision']} matmul peak"
            )
    bf16_kind = "native (the CPU reports AVX-512 BF16/AMX)" if peaks["native_bf16"] else "emulated (no native bf16)"
    lines += [
        f"- measured peaks ({peaks['threads']} thread{'s' if peaks['threads'] != 1 else ''}): "
        f"fp32 matmul 2048^2 {peaks['fp32'] / 1e9:.1f} GFLOP/s; "
        f"bf16 matmul {peaks['bf16_size']}^2 {peaks['bf16'] / 1e9:.1f} GFLOP/s, {bf16_kind}"
        + (
            f" (the best of {len(peaks['fp32_probes'])} probes, before and after the runs; fp32: "
            + ", ".join(f"{v / 1e9:.1f}" for v in peaks["fp32_probes"])
            + "; bf16: "
            + ", ".join(f"{v / 1e9:.1f}" for v in peaks["bf16_probes"])
            + " GFLOP/s)"
            if "fp32_probes" in peaks
            else ""
        ),
        "",
        "No test-set leakage (asserted on every cnnlab run): val_fraction > 0 (validation carved from the training "
        "split); fit() trained with the test split sealed (any access but len() raises) until its last epoch ended; "
        "fit()'s per-epoch history holds train/val metrics only; its final test accuracy equals the benchmark's "
        "last-epoch measurement, so the reported weights are the final ones (EMA or raw by config), not a chosen "
        "epoch. The benchmark's per-epoch test numbers are recorded only.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cnnlab recipe (0, 1, ...)")
    parser.add_argument("--baseline-seeds", type=int, default=1, help="seeds for the baseline (0: skip it)")
    parser.add_argument("--baseline-epochs", type=int, default=6, help="most epochs for the baseline")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--budget-seconds", type=float, default=900.0, help="stop a run after the epoch past this")
    parser.add_argument(
        "--recipes", default="default", help="comma-separated cnnlab recipes; NAME:N runs N seeds (e.g. default,long:1)"
    )
    parser.add_argument("--out", type=Path, help="also write the report (Markdown) here")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's header (repeatable)")
    args = parser.parse_args(argv)
    header = _machine() + [f"- note: {note}" for note in args.note]
    groups: list[list[tuple[str, str, int]]] = []
    for item in args.recipes.split(","):
        recipe, _, count = item.partition(":")
        groups.append([("cnnlab", recipe, seed) for seed in range(int(count) if count else args.seeds)])
    groups.append([("baseline", BASELINE, s) for s in range(args.baseline_seeds)])
    jobs = interleave(groups)
    rows: dict[str, list[dict[str, Any]]] = {}
    probes = [_spawn(("probe", "peaks", 0), args)]  # before the runs and after them: the better of the two
    for job in jobs:
        row = _spawn(job, args)
        rows.setdefault(row["name"], []).append(row)
        reached = ", ".join(f"{t:.0%} at {_time_to(row, t):.1f}s" for t in TARGETS)
        print(f"{job[1]} seed {job[2]}: final {row['final_accuracy']:.4f} after {len(row['epochs'])} epochs, "
              f"{row['wall_total']:.1f}s; {reached}; {row['maxrss_mib']:.0f} MiB", flush=True)  # fmt: skip
    probes.append(_spawn(("probe", "peaks", 0), args))
    peaks = best_peaks(probes)
    text = "\n".join(_report(rows, peaks, args, header)) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
