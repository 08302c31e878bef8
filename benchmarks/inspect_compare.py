"""cnnlab inspect against torchinfo and ptflops (and torchscan, when installed) on the model zoo.

For every registered model at its declared input size it compares parameters, MACs and per-layer output
shapes, and says *where* the tools differ (per layer class, from each tool's own per-layer numbers) and
*why* (each tool's counting convention, checked against the numbers). ``torch.utils.flop_counter``'s
``FlopCounterMode`` (conv + matmul FLOPs / 2) is the neutral reference for MACs. Then it times inspecting
ResNet-50 at 224x224 (after torch is imported) beside torchinfo in the same run.

Run:  .venv/bin/python benchmarks/inspect_compare.py [--out benchmarks/results/inspect_compare.md]
      [--max-gmacs 25] [--models 'resnet*'] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import ModelReport, analyze
from cnnlab.models import create_model, list_models, model_info

warnings.filterwarnings("ignore")

WHY = {
    "torchinfo": (
        "torchinfo derives MACs from parameter counts: a layer whose class name contains 'Conv' gets "
        "(weight + bias elements) x output positions, so each conv bias adds one per output value and a "
        "transposed conv is counted per *output* position (about stride^2 times too many); any other layer gets its "
        "parameter count once per sample, so a Linear adds its bias once, BatchNorm adds 2C, and "
        "parameter-free work (pooling, residual adds, functional ops) counts zero. A weight behind a "
        "parametrization (P4 layers) is not named 'weight' and falls to its RNN rule (x B x C_out)."
    ),
    "ptflops": (
        "ptflops' default 'pytorch' backend hooks torch.nn classes by exact type and patches a few "
        "functionals: conv and linear include one bias add per output value, BatchNorm counts 2 per "
        "element, ReLU 1 per element, pooling 1 per *input* element, upsampling 1 per output element; "
        "F.relu / F.*pool* / torch.add / torch.mul / matmul called anywhere are counted too, so "
        "nn.ReLU and nn.MaxPool2d (which call F.relu / F.max_pool2d inside) are counted twice, while "
        "'x + y' (operator add) and custom or parametrized modules count zero."
    ),
    "ptflops-aten": (
        "ptflops' 'aten' backend counts only aten.mm / addmm / bmm / convolution, each with one bias "
        "add per output value where the layer has a bias: it differs from cnnlab by exactly the bias adds "
        "(cnnlab's 'connections' minus MACs), and agrees on everything else, pooling and adds excluded."
    ),
}


@dataclass
class Row:
    """One model's numbers from every tool."""

    name: str
    input_size: tuple[int, ...]
    params: int = 0
    macs: int = 0
    reference_macs: int | None = None
    tools: dict[str, int | None] = field(default_factory=dict)  # tool -> MACs
    tool_params: dict[str, int | None] = field(default_factory=dict)
    shapes: str = "-"
    where: dict[str, str] = field(default_factory=dict)
    note: str = ""


# ---- per-tool runners --------------------------------------------------------------------------


def _rows_by_module(report: ModelReport) -> dict[str, list[Any]]:
    """cnnlab rows of each module path (all its calls: ``name``, ``name#2``, ...)."""
    out: dict[str, list[Any]] = defaultdict(list)
    for row in report.layers:
        out[row.name.split("#")[0]].append(row)
    return out


def _where(per_class: dict[str, int], outside: int, outside_label: str) -> str:
    parts = [f"{cls} {diff:+,}" for cls, diff in sorted(per_class.items(), key=lambda kv: -abs(kv[1])) if diff]
    if outside:
        parts.append(f"{outside_label} {outside:+,}")
    return "; ".join(parts) or "same"


def run_torchinfo(model: nn.Module, shape: tuple[int, ...], report: ModelReport) -> tuple[int, int, str, str]:
    """(params, MACs, shape agreement, where the MACs differ) from torchinfo.summary."""
    import torchinfo

    stats = torchinfo.summary(model, input_size=(1, *shape), verbose=0, device="cpu")
    names = {id(m): n for n, m in model.named_modules()}
    by_module = _rows_by_module(report)
    calls: dict[str, int] = defaultdict(int)
    per_class: dict[str, int] = defaultdict(int)
    matched_cnnlab = 0
    compared = agree = 0
    leaf_macs = 0
    seen_paths: set[str] = set()
    for layer in stats.summary_list:
        path = names.get(id(layer.module))
        if path is None:
            continue
        calls[path] += 1
        key = path if calls[path] == 1 else f"{path}#{calls[path]}"
        row = next((r for r in by_module.get(path, []) if r.name == key), None)
        if row is not None and isinstance(layer.output_size, list) and layer.output_size:
            compared += 1
            agree += tuple(layer.output_size) == tuple(row.output_shape)
        if not layer.is_leaf_layer:
            continue
        leaf_macs += layer.macs
        if path in seen_paths:
            continue  # torchinfo reports each call of a shared module; cnnlab's rows are summed once below
        seen_paths.add(path)
        ours = sum(r.macs for r in by_module.get(path, []))
        # torchinfo's leaf may sit inside a cnnlab leaf (a parametrization): cnnlab counts it in the parent
        matched_cnnlab += ours
        theirs = sum(li.macs for li in stats.summary_list if names.get(id(li.module)) == path and li.is_leaf_layer)
        per_class[type(layer.module).__name__] += theirs - ours
    outside = (stats.total_mult_adds - leaf_macs) - (report.totals.macs - matched_cnnlab)
    shapes = f"{agree}/{compared}" if compared else "-"
    return stats.total_params, stats.total_mult_adds, shapes, _where(per_class, outside, "outside torchinfo's leaves")


_PT_LINE = re.compile(r"^(?P<indent>\s*)\((?P<name>[^)]+)\): (?P<cls>[\w.]+)\((?P<rest>.*)$")
_PT_MACS = re.compile(r"([\d.]+) Mac,")


def run_ptflops(model: nn.Module, shape: tuple[int, ...], report: ModelReport) -> tuple[int | None, int | None, str]:
    """(params, MACs, where) from ptflops' default pytorch backend, per module from its layer printout."""
    import ptflops

    buf = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        macs, params = ptflops.get_model_complexity_info(
            model, shape, as_strings=False, print_per_layer_stat=True, flops_units="Mac",
            param_units="", output_precision=0, ost=buf, backend="pytorch",
        )  # fmt: skip
    if macs is None:
        return None, None, "ptflops failed"
    by_module = _rows_by_module(report)
    stack: list[str] = []
    per_class: dict[str, int] = defaultdict(int)
    module_total = matched = 0
    for line in buf.getvalue().splitlines()[1:]:
        m = _PT_LINE.match(line)
        if not m:
            continue
        depth = len(m["indent"]) // 2 - 1
        stack = [*stack[:depth], m["name"]]
        found = _PT_MACS.search(m["rest"])
        if found is None:
            continue  # a container: its numbers are on the next line
        path = ".".join(stack)
        theirs = int(float(found.group(1)))
        if not _is_ptflops_leaf(model, path):
            continue
        ours = sum(r.macs for r in by_module.get(path, []))
        module_total += theirs
        matched += ours
        per_class[m["cls"]] += theirs - ours
    outside = (int(macs) - module_total) - (report.totals.macs - matched)
    where = _where(per_class, outside, "patched functionals (F.relu, F.*pool*, torch.add, ...)")
    twice = sum(v for cls, v in per_class.items() if cls.endswith(_CALLS_PATCHED))
    if outside and outside == twice:
        where += " (= the activation/pooling modules' count again: counted twice)"
    return int(params), int(macs), where


# nn modules whose forward calls a functional ptflops also patches (so both hooks fire)
_CALLS_PATCHED = ("ReLU", "ReLU6", "ELU", "PReLU", "GELU", "Pool1d", "Pool2d", "Pool3d")


def _is_ptflops_leaf(model: nn.Module, path: str) -> bool:
    from ptflops.pytorch_ops import MODULES_MAPPING

    try:
        return type(model.get_submodule(path)) in MODULES_MAPPING
    except AttributeError:
        return False


def run_ptflops_aten(model: nn.Module, shape: tuple[int, ...], report: ModelReport) -> tuple[int | None, str]:
    import ptflops

    with contextlib.redirect_stdout(io.StringIO()):
        macs, _ = ptflops.get_model_complexity_info(
            model, shape, as_strings=False, print_per_layer_stat=False, backend="aten", ost=io.StringIO()
        )
    if macs is None:
        return None, "ptflops aten failed"
    bias_adds = report.totals.connections - report.totals.macs  # one add per output of a biased layer
    diff = int(macs) - report.totals.macs
    if diff == 0:
        return int(macs), "same"
    if diff == bias_adds:
        return int(macs), f"bias adds {diff:+,} (exactly cnnlab's connections - MACs)"
    return int(macs), f"{diff:+,} (bias adds are {bias_adds:+,}; the rest: {diff - bias_adds:+,})"


def reference_macs(name: str, shape: tuple[int, ...]) -> int:
    """FlopCounterMode's conv + matmul FLOPs / 2 on a meta-device build (no compute)."""
    with torch.device("meta"):
        model = create_model(name).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, *shape))
    return int(counter.get_total_flops()) // 2


# ---- the zoo table -----------------------------------------------------------------------------


def compare_zoo(pattern: str, max_gmacs: float) -> list[Row]:
    rows = []
    for name in list_models():
        if not fnmatch.fnmatch(name, pattern):
            continue
        info = model_info(name)
        shape = tuple(info.input_size)
        row = Row(name, shape)
        torch.manual_seed(0)
        model = create_model(name).eval()
        report = analyze(model, shape, name=name, lint=False)
        row.params, row.macs = report.totals.params, report.totals.macs
        row.reference_macs = reference_macs(name, shape)
        if report.totals.macs > max_gmacs * 1e9:
            row.note = f"torchinfo/ptflops skipped: {report.totals.macs / 1e9:.1f} G MACs > --max-gmacs {max_gmacs}"
            rows.append(row)
            continue
        t0 = time.perf_counter()
        for tool, fn in _tool_runs(model, shape, report).items():
            try:
                fn(row)
            except Exception as err:  # a tool that cannot handle a model is a finding, not a crash
                row.tools.setdefault(tool, None)
                row.where[tool] = f"{tool} failed: {type(err).__name__}: {str(err)[:80]}"
        row.note = row.note or f"{time.perf_counter() - t0:.1f} s for the three tool runs"
        rows.append(row)
        print(f"{name:18s} params {row.params:>12,}  MACs {row.macs:>15,}  {row.note}", file=sys.stderr)
        del model
    return rows


def _tool_runs(model: nn.Module, shape: tuple[int, ...], report: ModelReport) -> dict[str, Callable[[Row], None]]:
    def ti(row: Row) -> None:
        params, macs, shapes, where = run_torchinfo(model, shape, report)
        row.tool_params["torchinfo"], row.tools["torchinfo"], row.shapes, row.where["torchinfo"] = (
            params, macs, shapes, where,
        )  # fmt: skip

    def pt(row: Row) -> None:
        params, macs, where = run_ptflops(model, shape, report)
        row.tool_params["ptflops"], row.tools["ptflops"], row.where["ptflops"] = params, macs, where

    def aten(row: Row) -> None:
        macs, where = run_ptflops_aten(model, shape, report)
        row.tools["ptflops-aten"], row.where["ptflops-aten"] = macs, where

    return {"torchinfo": ti, "ptflops": pt, "ptflops-aten": aten}


# ---- timing ------------------------------------------------------------------------------------


def _median(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    fn()  # warm-up (first-call caches, lazy imports inside the tool)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def _cli_inspect() -> None:
    from cnnlab.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()):
        main(["inspect", "resnet50"])


def time_resnet50(repeats: int) -> list[tuple[str, tuple[float, float, float]]]:
    import torchinfo

    from cnnlab.analysis.render import render

    torch.manual_seed(0)
    model = create_model("resnet50").eval()  # real CPU weights: what a user has in hand
    with torch.device("meta"):
        meta_model = create_model("resnet50").eval()
    shape = (3, 224, 224)
    results = [
        ("cnnlab analyze(model) (CPU weights)", _median(lambda: analyze(model, shape), repeats)),
        ("cnnlab analyze + render text table", _median(lambda: render(analyze(model, shape), "text"), repeats)),
        ("cnnlab analyze(model) (meta-built model)", _median(lambda: analyze(meta_model, shape), repeats)),
        ("`cnnlab inspect resnet50` in-process (build + analyze + text)", _median(_cli_inspect, repeats)),
        (
            "torchinfo.summary (CPU, its default)",
            _median(lambda: torchinfo.summary(model, input_size=(1, *shape), verbose=0), repeats),
        ),
        (
            "torchinfo.summary (device='meta')",
            _median(lambda: torchinfo.summary(meta_model, input_size=(1, *shape), verbose=0, device="meta"), repeats),
        ),
    ]
    return results


# ---- torchscan's receptive field ---------------------------------------------------------------


def torchscan_rf() -> list[str]:
    """What torchscan reports as ResNet-50's receptive field, next to cnnlab's."""
    try:
        import torchscan
    except ImportError:
        return ["torchscan is not installed: skipped (optional)."]
    from importlib.metadata import version

    ver = version("torchscan")
    torch.manual_seed(0)
    model = create_model("resnet50").eval()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        info = torchscan.crawl_module(model, (3, 224, 224))
    with torch.device("meta"):
        ours = analyze(create_model("resnet50"), (3, 224, 224), lint=False)
    last = ours.final_spatial_rf
    assert last is not None
    lines = [
        f"cnnlab: ResNet-50 layer4 output receptive field {last.size[0]} (jump {last.jump[0]:g}); "
        f"smallest over all paths {ours.layer('layer4.2.add').rf_min[0]}."  # type: ignore[index]
    ]
    layers = info["layers"]
    if "rf" in layers[0]:  # torchscan 0.1.x: one receptive field chained through the calls in order
        leaves = [ly for ly in layers if ly.get("is_leaf")]
        last_conv = [ly for ly in leaves if ly["type"] == "Conv2d"][-1]
        fc = leaves[-1]
        lines.append(
            f"torchscan {ver}: the last conv of layer4 gets receptive field {last_conv['rf']:g} with "
            f"stride {last_conv['s']:g} (the head: {fc['rf']:g}). It chains every module in call order, so "
            "each block's 1x1 shortcut conv and its stride are stacked onto the main path as if they were "
            "in series; the true value is the largest over the parallel paths."
        )
    else:  # torchscan 0.2.x: per-layer kernel extent only
        rfs = [ly["metrics"]["receptive_field"]["value"] for ly in layers if "receptive_field" in ly.get("metrics", {})]
        lines.append(
            f"torchscan {ver}: reports a per-layer receptive field (the layer's own kernel extent, largest "
            f"{max(rfs):g}) and '?' for containers: no network-level receptive field to compare."
        )
    return lines


# ---- report ------------------------------------------------------------------------------------


def machine() -> list[str]:
    from cnnlab.cpuinfo import cpu_description

    cpu = cpu_description()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from importlib.metadata import PackageNotFoundError, version

    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    return [
        f"- CPU: {cpu}; {cores} cores available to this process (os.cpu_count() = {os.cpu_count()}); "
        f"torch threads {torch.get_num_threads()}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, torchinfo {v('torchinfo')}, "
        f"ptflops {v('ptflops')}, torchscan {v('torchscan')}, cnnlab {v('cnnlab')}",
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine shared with other jobs (timings are "
        "medians for that reason)",
    ]


def summary(rows: list[Row]) -> list[str]:
    compared = [r for r in rows if r.tools]
    same_params = [r for r in compared if all(v == r.params for v in r.tool_params.values())]
    same_ref = [r for r in rows if r.reference_macs == r.macs]
    agree = total = 0
    for r in compared:
        if "/" in r.shapes:
            a, b = r.shapes.split("/")
            agree, total = agree + int(a), total + int(b)
    aten = [r for r in compared if r.where.get("ptflops-aten", "").startswith(("same", "bias adds"))]
    skipped = [r.name for r in rows if not r.tools]
    lines = [
        f"- {len(rows)} registered models; torchinfo and ptflops ran on {len(compared)}"
        + (f" (skipped: {', '.join(skipped)})" if skipped else ""),
        f"- parameters: torchinfo and ptflops equal cnnlab on {len(same_params)}/{len(compared)} models",
        f"- MACs: cnnlab equals torch's FlopCounterMode (conv + matmul) on {len(same_ref)}/{len(rows)} models; "
        f"ptflops' aten backend differs from cnnlab by exactly the bias adds on {len(aten)}/{len(compared)}",
        f"- output shapes of leaf modules: torchinfo and cnnlab agree on {agree}/{total}",
    ]
    for tool in ("torchinfo", "ptflops"):
        missed = [
            f"{r.name} ({100 * ((r.tools[tool] or 0) - r.macs) / r.macs:+.0f}%)"
            for r in compared
            if r.tools.get(tool) is not None and r.macs and (r.tools[tool] or 0) < 0.5 * r.macs
        ]
        over = [
            f"{r.name} ({100 * ((r.tools[tool] or 0) - r.macs) / r.macs:+.0f}%)"
            for r in compared
            if r.tools.get(tool) is not None and r.macs and (r.tools[tool] or 0) > 1.1 * r.macs
        ]
        if missed:
            lines.append(f"- {tool} misses most of the work of: {', '.join(missed)}")
        if over:
            lines.append(f"- {tool} counts over 10% more than conv + matmul on: {', '.join(over)}")
    return lines


def _fmt(v: int | None) -> str:
    return "failed" if v is None else f"{v:,}"


def _diff(v: int | None, ref: int) -> str:
    if v is None:
        return "failed"
    d = v - ref
    return f"{v:,} ({d:+,}; {100 * d / ref:+.2f}%)" if d and ref else f"{v:,} (same)"


def markdown(rows: list[Row], timing: list[tuple[str, tuple[float, float, float]]], ts: list[str]) -> str:
    out = ["# cnnlab inspect vs torchinfo and ptflops", ""]
    out += ["Generated by `.venv/bin/python benchmarks/inspect_compare.py`.", "", "## Machine", "", *machine(), ""]
    out += ["## Summary", "", *summary(rows), ""]
    out += [
        "## Parameters, MACs and shapes on the zoo",
        "",
        "Every registered model, full size, at its declared input (batch 1). cnnlab's MACs count conv, "
        "transposed conv and linear/matmul multiply-adds, biases excluded. 'FlopCounterMode' is "
        "`torch.utils.flop_counter` (conv + matmul FLOPs / 2) on the same model, the neutral reference. "
        "'shapes' = leaf-module output shapes where torchinfo and cnnlab agree / compared. ptflops reports "
        "no shapes.",
        "",
        "| model | input | params (cnnlab) | torchinfo / ptflops params | MACs (cnnlab) | FlopCounterMode | "
        "torchinfo MACs | ptflops MACs | ptflops aten MACs | shapes |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ref = "same" if r.reference_macs == r.macs else _fmt(r.reference_macs)
        p = [r.tool_params.get("torchinfo"), r.tool_params.get("ptflops")]
        params = "same" if all(v == r.params for v in p) else " / ".join(_fmt(v) for v in p)
        if not r.tools:
            params = "-"
        cells = [_diff(r.tools[t], r.macs) if t in r.tools else "-" for t in ("torchinfo", "ptflops", "ptflops-aten")]
        out.append(
            f"| {r.name} | {'x'.join(map(str, r.input_size))} | {r.params:,} | {params} | {r.macs:,} | {ref} | "
            + " | ".join(cells)
            + f" | {r.shapes} |"
        )
    out += ["", "## Where they differ (per layer class: tool minus cnnlab)", ""]
    out += ["| model | torchinfo | ptflops (pytorch backend) | ptflops (aten backend) |", "|---|---|---|---|"]
    for r in rows:
        if r.where:
            cells = [r.where.get(t, "-") for t in ("torchinfo", "ptflops", "ptflops-aten")]
            out.append(f"| {r.name} | " + " | ".join(cells) + " |")
        else:
            out.append(f"| {r.name} | {r.note} | | |")
    out += ["", "## Why", ""]
    out += [f"- **{tool}**: {text}" for tool, text in WHY.items()]
    out += [
        "- **cnnlab**: MACs of conv / transposed conv / linear from the layer arithmetic (biases excluded), "
        "matmuls and unknown modules from FlopCounterMode; parameters = sum(p.numel()), shared once; "
        "shapes from a meta-device run of the torch.fx graph (functional ops are rows too).",
        "",
        "## Speed: inspecting ResNet-50 at 3x224x224 (after `import torch`)",
        "",
        "| what | median s | min s | max s |",
        "|---|---:|---:|---:|",
    ]
    for label, (med, lo, hi) in timing:
        out.append(f"| {label} | {med:.3f} | {lo:.3f} | {hi:.3f} |")
    cn, ti, ti_meta = timing[0][1][0], timing[4][1][0], timing[5][1][0]
    out += [
        "",
        f"cnnlab analyze: {cn:.3f} s (bar: < 0.5 s: {'met' if cn < 0.5 else 'NOT met'}; the whole "
        f"`cnnlab inspect` {timing[3][1][0]:.3f} s); "
        f"torchinfo / cnnlab = {ti / cn:.1f}x on CPU weights, {ti_meta / cn:.1f}x with torchinfo on the meta "
        "device. Each: 1 warm-up, then the median of the timed runs shown.",
        "",
        "## Receptive field of ResNet-50's last stage",
        "",
        *[f"- {line}" for line in ts],
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "inspect_compare.md")
    parser.add_argument("--models", default="*", help="fnmatch pattern over registered names")
    parser.add_argument("--max-gmacs", type=float, default=25.0, help="skip the tools' real forward above this")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per timing row (median reported)")
    args = parser.parse_args(argv)
    rows = compare_zoo(args.models, args.max_gmacs)
    timing = time_resnet50(args.repeats)
    ts = torchscan_rf()
    text = markdown(rows, timing, ts)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
