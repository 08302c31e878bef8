"""Where the default recipe's CPU training step spends its time, and how close its convolutions get to the peak.

One run of ``fit()`` with the default recipe (one epoch on the real Fashion-MNIST: the step's work
does not depend on the epoch count) is timed over ``--steps`` steps, then ``torch.profiler`` records
the same number of steps. The profiler's self times, grouped by kind of operator, give each kind's
share of a step; applied to the unprofiled step time they give milliseconds. The convolutions' FLOPs
(cnnlab's own MAC count per layer, the backward passes that really run) over their share of the step
give the FLOP/s of the convolution kernels themselves, beside the matmul peaks measured in the same
run. That bounds the model-FLOPs utilisation (MFU) that ``benchmarks/train_speed.py`` reports: even
with every other operator free, a step could not beat its convolutions. Last, the synthetic FastNet
step of ``conv_grad.py`` with a trained stem against a whitened, frozen one (the default recipe's).

Usage::

    .venv/bin/python benchmarks/step_profile.py --out benchmarks/results/step_profile.md
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from cnnlab.analysis import analyze
from cnnlab.cpuinfo import cpu_description
from cnnlab.models.fastnet import FastNet
from cnnlab.train.loop import Hooks, fit
from cnnlab.train.recipes import resolve_recipe
from cnnlab.train.tricks import resolve_precision
from conv_grad import step_rate  # the synthetic FastNet step (channels-last, Nesterov SGD)
from train_speed import _probe_peaks  # the same matmul peaks as the speed benchmark
from train_speed import executed_flops as executed_flops_per_image

# Operator kinds, first match wins. aten::mm and aten::cat in this step are MatmulGradConv2d's
# im2col weight gradient (the linear head's matmuls are addmm and two tiny mm, 0.1% of the FLOPs).
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("convolution", ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::mm", "aten::cat")),
    ("max pooling", ("aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward")),
    ("batch norm", ("aten::native_batch_norm", "aten::native_batch_norm_backward")),
    ("ReLU", ("aten::relu_", "aten::clamp_min_", "aten::threshold_backward")),
    ("zero-fill and copies (casts, layouts)", ("aten::fill_", "aten::zero_", "aten::copy_")),
    ("optimizer and EMA updates", ("aten::add_", "aten::mul_", "aten::lerp_", "aten::_foreach_*")),
)


def kind_of(op: str) -> str:
    for kind, patterns in KINDS:
        if any(fnmatch.fnmatchcase(op, p) for p in patterns):
            return kind
    return "everything else (augmentation, normalisation, loss, head, Python and autograd overhead)"


def executed_flops(model: torch.nn.Module, input_size: tuple[int, ...]) -> tuple[float, float]:
    """(model FLOPs, convolution FLOPs that really run) per image for one training step.

    Model FLOPs follow train_speed.py's MFU: cnnlab's MACs x 2 x 3. What runs is counted, not
    assumed (``train_speed.executed_flops``: torch's ``FlopCounterMode`` over a training step), less
    the linear layers (the head). It sees the gradients autograd skips (a frozen,
    whitened stem needs no weight gradient, nor an input gradient for the layer after it when nothing
    below trains), the rows the pooled convolutions skip (``MatmulGradConv2d(pooled=True)``), and the
    im2col matmuls of ``MatmulGradConv2d`` (counted as ``aten.mm``).
    """
    rows = [r for r in analyze(model, input_size).layers if r.macs]
    return sum(6.0 * r.macs for r in rows), executed_flops_per_image(model, input_size, exclude=(torch.nn.Linear,))


def profile_default(threads: int, steps: int) -> dict[str, Any]:
    cfg = resolve_recipe("default", {"epochs": 1, "threads": threads, "progress": "none"}, cuda_available=False)
    marks: dict[str, float] = {}
    prof = torch.profiler.profile()
    warm, timed_end = 20, 20 + steps

    def on_step(state: Any, info: dict[str, Any]) -> None:
        if state.step == warm:
            marks["start"] = time.perf_counter()
        elif state.step == timed_end:
            marks["end"] = time.perf_counter()
            prof.start()
        elif state.step == timed_end + steps:
            prof.stop()

    with tempfile.TemporaryDirectory() as out:
        result = fit(cfg, out, hooks=Hooks(on_step=[on_step]))
    step_ms = (marks["end"] - marks["start"]) / steps * 1e3
    shares: dict[str, float] = {}
    for event in prof.key_averages():
        kind = kind_of(event.key)
        shares[kind] = shares.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(shares.values())
    model_flops, conv_flops = executed_flops(result.state.model, (1, 28, 28))
    return {
        "step_ms": step_ms, "batch": cfg.batch_size, "shares": {k: v / total for k, v in shares.items()},
        "model_flops": model_flops, "conv_flops": conv_flops, "threads": torch.get_num_threads(),
        "whiten": cfg.whiten, "ema": cfg.ema_decay,
        "precision": resolve_precision(cfg.precision, torch.device("cpu")),
    }  # fmt: skip


def frozen_stem_rates(batch: int, repeats: int, precision: str) -> tuple[list[float], list[float]]:
    """Images/s of FastNet's step with a trained stem and with a whitened, frozen one, alternating rounds."""
    trained, frozen = [], []
    for _ in range(repeats):  # alternate, so drifts of the machine hit both sides
        torch.manual_seed(0)
        trained.append(step_rate(FastNet(), batch, 30, precision))
        torch.manual_seed(0)
        net = FastNet()
        net.init_whitening(torch.randn(256, 1, 28, 28))  # the filters' values do not change the cost
        frozen.append(step_rate(net, batch, 30, precision))
    return trained, frozen


def report(row: dict[str, Any], peaks: dict[str, Any], args: argparse.Namespace) -> str:
    step_s, batch = row["step_ms"] / 1e3, row["batch"]
    achieved = row["model_flops"] * batch / step_s
    conv_s = row["shares"]["convolution"] * step_s
    conv_rate = row["conv_flops"] * batch / conv_s
    bound = row["model_flops"] * batch / conv_s  # MFU numerator if only the convolutions took time
    # The peak to hold the step against is that of the precision the recipe runs in: bf16 where the
    # CPU has it natively, else fp32 (an emulated bf16 matmul is far slower than fp32, so "% of it"
    # would say nothing).
    prec = row["precision"]
    peak = peaks["bf16"] if prec == "bf16" else peaks["fp32"]
    peak_name = f"{prec} matmul peak"
    precision_text = "bf16 autocast" if prec == "bf16" else f"{prec}, no autocast"
    lines = [
        "# Where the default recipe's CPU training step spends its time",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu_description()}, {os.cpu_count()} logical cores; torch {torch.__version__}, Python "
        f"{platform.python_version()}; {row['threads']} threads",
        f"- command: `benchmarks/step_profile.py {' '.join(args.argv)}`",
        f"- run: `cnnlab train` default recipe (fastnet, batch {batch}, {precision_text}, channels-last, "
        f"whitened frozen stem: {row['whiten']}, EMA {row['ema']}), steps 20-{20 + args.steps} timed, "
        f"the next {args.steps} profiled",
        "",
        f"Step: {row['step_ms']:.1f} ms ({batch / step_s:.0f} images/s). Model FLOPs (MACs x 2 x 3): "
        f"{achieved / 1e9:.0f} GFLOP/s = {achieved / peak:.0%} of the {peak_name} "
        f"(bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s at {peaks['bf16_size']}^2, "
        f"{'native' if peaks['native_bf16'] else 'emulated: the CPU has no native bf16'}; "
        f"fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s at 2048^2).",
        "",
        "| kind of operator | share of the step (profiler self time) | ms per step |",
        "|---|---|---|",
    ]
    for kind, share in sorted(row["shares"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {kind} | {share:.1%} | {share * row['step_ms']:.1f} |")
    lines += [
        "",
        f"- The convolutions' own FLOPs (forward, and the gradients that run: "
        f"{row['conv_flops'] / 1e6:.1f} MFLOP per image) take {conv_s * 1e3:.1f} ms per step: "
        f"**{conv_rate / 1e9:.0f} GFLOP/s, {conv_rate / peak:.0%} of the {peak_name}**.",
        f"- If every other operator took no time, the model-FLOPs utilisation would be at most "
        f"**{bound / peak:.0%}** of the {peak_name}. The other {1 - row['shares']['convolution']:.0%} "
        "of the step is pooling, normalisation, element-wise and copy work, which memory bandwidth bounds, "
        "and Python and autograd overhead.",
    ]
    trained, frozen = row["stem_rates"]
    t, f = statistics.median(trained), statistics.median(frozen)
    lines += [
        "",
        f"## Frozen whitened stem vs trained stem (synthetic FastNet step, {prec}, batch {batch}, median images/s of "
        f"{len(trained)} alternating rounds)",
        "",
        "A frozen stem needs no gradient below the first batch norm: the backward pass skips the stem's",
        "max pool and its convolution at full resolution.",
        "",
        f"- trained stem: {t:.0f} images/s (rounds: {', '.join(f'{v:.0f}' for v in trained)})",
        f"- whitened, frozen stem: {f:.0f} images/s (rounds: {', '.join(f'{v:.0f}' for v in frozen)})",
        f"- ratio: {f / t:.2f}x",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=40, help="steps timed, then as many profiled (default 40)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds of the stem comparison")
    parser.add_argument("--out", type=Path, help="write the markdown report here too")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    torch.set_num_threads(args.threads)
    peaks = _probe_peaks(args.threads)
    row = profile_default(args.threads, args.steps)
    row["stem_rates"] = frozen_stem_rates(row["batch"], args.repeats, row["precision"])
    text = report(row, peaks, args)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
