"""Seed 004's two-layer NumPy network (examples/two_layer_net.py): its printed backward pass lacks the
ReLU mask, the masked one equals autograd, and both runs of the seed's 500 steps are reproduced."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_layer_net.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("two_layer_net", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_masked_backward_is_autograd_and_the_seeds_is_not(example: ModuleType) -> None:
    p = example.make_problem(1)
    loss, ref_w1, ref_w2 = example.autograd_step(p.x, p.y, p.w1, p.w2)
    masked = example.masked_numpy_step(p.x, p.y, p.w1, p.w2)
    seed = example.seed_numpy_step(p.x, p.y, p.w1, p.w2)
    assert masked[0] == pytest.approx(loss, rel=1e-12) and seed[0] == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(masked[1], ref_w1, rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(masked[2], ref_w2, rtol=1e-10, atol=1e-6)
    np.testing.assert_allclose(seed[2], ref_w2, rtol=1e-10, atol=1e-6)  # w2's gradient needs no mask
    assert example.relative_error(seed[1], ref_w1) > 0.1  # w1's does: the seed's grad_w1 is wrong
    # the seed's grad_w1 is exactly the gradient of the same net with the ReLU's derivative taken as 1
    h = torch.from_numpy(p.x) @ torch.from_numpy(p.w1)
    y_pred = h.clamp(min=0) @ torch.from_numpy(p.w2)
    np.testing.assert_allclose(seed[1], p.x.T @ (2 * (y_pred.numpy() - p.y) @ p.w2.T), rtol=1e-9, atol=1e-6)


def test_the_seeds_500_steps_fall_and_the_masked_run_follows_autograd(example: ModuleType) -> None:
    p = example.make_problem(0)
    masked = example.train(example.masked_numpy_step, p, 500)
    reference = example.train(example.autograd_step, p, 500)
    np.testing.assert_allclose(masked, reference, rtol=1e-6)
    assert masked[0] > 1e6 and masked[-1] < 1e-3  # from ~3e7 to below 0.001
    seed = example.train(example.seed_numpy_step, p, 500)
    assert seed[0] == masked[0] and seed[100] != pytest.approx(masked[100], rel=1e-3)


def test_script_prints_the_comparison(example: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert example.main(["--steps", "120", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "seed's NumPy       grad_w1" in out and "NumPy + ReLU mask  grad_w1" in out
    assert "    119" in out and "    100" in out  # rows every 100 steps and the last one
    with pytest.raises(SystemExit):
        example.main(["--steps", "0"])
