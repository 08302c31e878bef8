"""Where FastNet's CPU training step spends its time, and what MatmulGradConv2d buys, in one run.

Three measurements, each against its baseline in the same process (the machine is noisy, so the
two sides alternate over ``--repeats`` rounds and the report gives the median):

1. every 3x3 convolution of FastNet (batch 256, bf16, channels-last): forward, input gradient and
   weight gradient by oneDNN, and the weight gradient as the im2col matmul of MatmulGradConv2d;
2. a whole FastNet training step (forward, backward, Nesterov SGD) with ``nn.Conv2d`` everywhere
   against the same net with MatmulGradConv2d (the stock FastNet), in images per second;
3. the same step in fresh processes with glibc's default allocator and after
   ``cnnlab.train.tricks.reuse_freed_memory()`` (what ``fit()`` calls on CPU): minor page faults per
   step and images per second.

Usage::

    .venv/bin/python benchmarks/conv_grad.py --out benchmarks/results/conv_grad.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.cpuinfo import cpu_description
from cnnlab.layers.matmul_grad import MatmulGradConv2d, im2col3x3
from cnnlab.models.fastnet import FastNet

# FastNet's four convolutions on a 28x28 input: (in, out, map size).
CONVS = ((1, 16, 28), (16, 64, 14), (64, 128, 7), (128, 256, 3))


def _ms(fn: Callable[[], object], n: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def conv_row(cin: int, cout: int, size: int, batch: int, n: int) -> dict[str, float]:
    """Milliseconds of one convolution's forward and gradients (bf16, channels-last)."""
    fmt = torch.channels_last
    x = torch.randn(batch, cin, size, size, dtype=torch.bfloat16).contiguous(memory_format=fmt)
    w = torch.randn(cout, cin, 3, 3, dtype=torch.bfloat16).contiguous(memory_format=fmt)
    g = torch.randn(batch, cout, size, size, dtype=torch.bfloat16).contiguous(memory_format=fmt)

    def backward(mask: list[bool]) -> object:
        args = (g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
        return torch.ops.aten.convolution_backward(*args)

    g2 = g.permute(0, 2, 3, 1).reshape(-1, cout)
    return {
        "forward": _ms(lambda: F.conv2d(x, w, padding=1), n),
        "grad_input": _ms(lambda: backward([True, False, False]), n),
        "grad_weight": _ms(lambda: backward([False, True, False]), n),
        "grad_weight_matmul": _ms(lambda: g2.t() @ im2col3x3(x), n),
    }


def _plain(model: FastNet) -> FastNet:
    """The same net with every MatmulGradConv2d replaced by a stock nn.Conv2d (shared weights)."""
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, MatmulGradConv2d):
                conv = nn.Conv2d(child.in_channels, child.out_channels, 3, padding=1, bias=child.bias is not None)
                conv.weight = child.weight
                setattr(module, name, conv)
    return model


def step_rate(model: nn.Module, batch: int, steps: int, precision: str = "bf16") -> float:
    """Training images per second of ``model`` (``precision`` bf16 autocast or fp32, channels-last, Nesterov SGD)."""
    model = model.to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / (_ms(step, steps) / 1e3)


_ALLOC_CHILD = """
import resource, sys, torch
sys.path.insert(0, {here!r})
from conv_grad import step_rate
from cnnlab.models.fastnet import FastNet
from cnnlab.train.tricks import reuse_freed_memory
torch.set_num_threads({threads})
if {tuned}:
    reuse_freed_memory()
torch.manual_seed(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rate = step_rate(FastNet(), {batch}, 40)
print(rate, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 43)
"""


def allocator_rate(tuned: bool, batch: int, threads: int) -> tuple[float, float]:
    """(images/s, minor page faults per step) of FastNet in a fresh process, allocator tuned or not."""
    code = _ALLOC_CHILD.format(here=str(Path(__file__).parent), threads=threads, tuned=tuned, batch=batch)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds; the median is reported")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    lines = [
        "# FastNet's convolutions on a CPU: oneDNN's weight gradient vs MatmulGradConv2d's matmul",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average at start {os.getloadavg()[0]:.1f}",
        f"- CPU: {cpu_description()}, {os.cpu_count()} logical cores, "
        f"{args.threads} threads; torch {torch.__version__}",
        f"- command: `benchmarks/conv_grad.py --batch {args.batch} --repeats {args.repeats} --threads {args.threads}`",
        "",
        f"## One convolution, batch {args.batch}, bf16, channels-last (median ms of {args.repeats} rounds)",
        "",
        "| conv | map | forward | input grad | weight grad (oneDNN) | weight grad (im2col matmul) | matmul speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for cin, cout, size in CONVS:
        rows = [conv_row(cin, cout, size, args.batch, 20) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        lines.append(
            f"| {cin}->{cout} | {size}x{size} | {med['forward']:.2f} | {med['grad_input']:.2f} | "
            f"{med['grad_weight']:.2f} | {med['grad_weight_matmul']:.2f} | "
            f"{med['grad_weight'] / med['grad_weight_matmul']:.2f}x |"
        )
        print(lines[-1], flush=True)
    plain, fast = [], []
    for _ in range(args.repeats):  # alternate, so drifts of the machine hit both sides
        torch.manual_seed(0)
        plain.append(step_rate(_plain(FastNet()), args.batch, 30))
        torch.manual_seed(0)
        fast.append(step_rate(FastNet(), args.batch, 30))
    p, f = statistics.median(plain), statistics.median(fast)
    lines += [
        "",
        f"## Whole training step, FastNet, batch {args.batch} (median images/s of {args.repeats} alternating rounds)",
        "",
        f"- nn.Conv2d everywhere: {p:.0f} images/s (rounds: {', '.join(f'{v:.0f}' for v in plain)})",
        f"- MatmulGradConv2d (weight gradient as a matmul on maps of <= 16 pixels): {f:.0f} images/s "
        f"(rounds: {', '.join(f'{v:.0f}' for v in fast)})",
        f"- ratio: {f / p:.2f}x",
    ]
    print("\n".join(lines[-3:]))
    default, tuned = [], []
    for _ in range(args.repeats):  # fresh processes: the allocator setting is process-wide
        default.append(allocator_rate(False, args.batch, args.threads))
        tuned.append(allocator_rate(True, args.batch, args.threads))
    d, t = statistics.median(r[0] for r in default), statistics.median(r[0] for r in tuned)
    d_faults, t_faults = statistics.median(r[1] for r in default), statistics.median(r[1] for r in tuned)
    lines += [
        "",
        f"## Allocator, FastNet step, batch {args.batch}, fresh process each (median of {args.repeats} alternating)",
        "",
        f"- glibc defaults: {d:.0f} images/s, {d_faults:.0f} minor page faults per step (warm-up included)",
        f"- reuse_freed_memory(): {t:.0f} images/s, {t_faults:.0f} minor page faults per step (warm-up included)",
        f"- ratio: {t / d:.2f}x",
    ]
    print("\n".join(lines[-3:]))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
