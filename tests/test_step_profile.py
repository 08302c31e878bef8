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


def test_executed_flops_skip_the_gradients_that_do_not_run() -> None:
    net = create_model("fastnet")
    stem, rest = 9 * 16 * 28 * 28, 9 * 16 * 64 * 14 * 14 + 9 * 64 * 128 * 7 * 7 + 9 * 128 * 256 * 3 * 3
    model_flops, conv = step_profile.executed_flops(net, (1, 28, 28))
    assert model_flops == 6 * (stem + rest + 256 * 10)  # MACs x 2 x 3, the head included
    assert conv == 2 * stem * 2 + 2 * rest * 3  # the stem's input needs no gradient
    net.init_whitening(torch.randn(8, 1, 28, 28))  # frozen stem: no weight gradient either
    assert step_profile.executed_flops(net, (1, 28, 28)) == (model_flops, conv - 2 * stem)


def test_the_speed_benchmark_holds_training_against_the_best_probe() -> None:
    """A peak is what the cores can do: one slow probe (a busy host) must not halve it and double the MFU."""
    import train_speed

    slow = {"fp32": 66e9, "bf16": 1.3e9, "bf16_size": 512, "native_bf16": False, "threads": 2}
    fast = {"fp32": 132e9, "bf16": 1.2e9, "bf16_size": 1024, "native_bf16": False, "threads": 2}
    peaks = train_speed.best_peaks([slow, fast])
    assert (peaks["fp32"], peaks["bf16"], peaks["bf16_size"]) == (132e9, 1.3e9, 512)
    assert peaks["fp32_probes"] == [66e9, 132e9]
