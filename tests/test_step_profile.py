"""benchmarks/step_profile.py: operator kinds and the FLOPs a training step really runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cnnlab.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import step_profile  # a benchmark script: importable once benchmarks/ is on the path


@pytest.mark.parametrize(
    ("op", "kind"),
    [
        ("aten::mkldnn_convolution", "convolution"),
        ("aten::convolution_backward", "convolution"),
        ("aten::max_pool2d_with_indices_backward", "max pooling"),
        ("aten::_foreach_lerp_", "optimizer and EMA updates"),
        ("aten::fill_", "zero-fill and copies (casts, layouts)"),
        ("aten::div", "everything else (augmentation, normalisation, loss, head, Python and autograd overhead)"),
    ],
)
def test_operator_kinds(op: str, kind: str) -> None:
    assert step_profile.kind_of(op) == kind


def test_executed_flops_skip_the_gradients_and_rows_that_do_not_run() -> None:
    net = create_model("fastnet")
    stem, s1, s3 = 9 * 16 * 28 * 28, 9 * 16 * 64 * 14 * 14, 9 * 128 * 256 * 3 * 3
    s2, s2_run = 9 * 64 * 128 * 7 * 7, 9 * 64 * 128 * 6 * 6  # the pool after it drops the 7th row and column
    model_flops, conv = step_profile.executed_flops(net, (1, 28, 28))
    assert model_flops == 6 * (stem + s1 + s2 + s3 + 256 * 10)  # MACs x 2 x 3, the head included
    assert conv == 2 * stem * 2 + 2 * (s1 + s2_run + s3) * 3  # the stem's input (the images) needs no gradient
    net.init_whitening(torch.randn(8, 1, 28, 28))  # frozen stem: no weight gradient, no input gradient above it
    assert step_profile.executed_flops(net, (1, 28, 28)) == (model_flops, conv - 2 * stem - 2 * s1)


def test_the_speed_benchmark_holds_training_against_the_best_probe() -> None:
    """A peak is what the cores can do: one slow probe (a busy host) must not halve it and double the MFU."""
    import train_speed

    slow = {"fp32": 66e9, "bf16": 1.3e9, "bf16_size": 512, "native_bf16": False, "threads": 2}
    fast = {"fp32": 132e9, "bf16": 1.2e9, "bf16_size": 1024, "native_bf16": False, "threads": 2}
    peaks = train_speed.best_peaks([slow, fast])
    assert (peaks["fp32"], peaks["bf16"], peaks["bf16_size"]) == (132e9, 1.3e9, 512)
    assert peaks["fp32_probes"] == [66e9, 132e9]


def test_the_speed_benchmark_interleaves_seeds_so_drift_hits_every_run() -> None:
    import doctest

    import train_speed

    jobs = train_speed.interleave([[("cnnlab", "default", s) for s in range(3)], [("cnnlab", "long", 0)],
                                   [("baseline", "b", s) for s in range(2)], []])  # fmt: skip
    assert [(j[1], j[2]) for j in jobs] == [("default", 0), ("long", 0), ("b", 0), ("default", 1), ("b", 1),
                                            ("default", 2)]  # fmt: skip
    assert train_speed.interleave([]) == [] and doctest.testmod(train_speed).failed == 0


def test_the_speed_report_puts_the_executed_flops_beside_the_model_flops() -> None:
    """The MFU line counts model FLOPs (MACs x 6); the step's own FLOPs (FlopCounterMode) stand beside them."""
    import argparse

    import train_speed

    def run(name: str, acc: float, **extra: object) -> dict[str, object]:
        epochs = [{"epoch": 1, "wall": 10.0, "test_accuracy": acc, "val_accuracy": acc}]
        return {"name": name, "seed": 0, "epochs": epochs, "stopped_by_budget": False, "wall_total": 10.0,
                "final_accuracy": acc, "maxrss_mib": 100.0, "images_per_second": 1000.0, "macs": 8e6,
                "precision": "fp32", **extra}  # fmt: skip

    net = create_model("fastnet")
    net.init_whitening(torch.randn(8, 1, 28, 28))
    executed = train_speed.executed_flops(net, (1, 28, 28))
    assert executed < 6 * 8_188_672  # the frozen stem's gradients and the pooled rows do not run
    rows = {"default": [run("default", 0.93, executed_flops=executed)], train_speed.BASELINE: [run("b", 0.91)]}
    peaks = {"fp32": 100e9, "bf16": 1e9, "bf16_size": 512, "native_bf16": False, "threads": 2}
    args = argparse.Namespace(threads=2, recipes="default", seeds=1, baseline_seeds=1, baseline_epochs=1,
                              budget_seconds=60.0)  # fmt: skip
    text = "\n".join(train_speed._report(rows, peaks, args, []))
    assert "8.00 M MACs/image x 1000 images/s" in text and "48.0 GFLOP/s in fp32; that is 48% of the fp32" in text
    line = next(s for s in text.splitlines() if "the step itself runs" in s)
    assert f"{executed / 1e6:.1f} MFLOP per image, not 48.0" in line
    assert f"{executed * 1000 / 1e9:.1f} GFLOP/s of executed work, {executed * 1000 / 100e9:.0%} of the fp32" in line
