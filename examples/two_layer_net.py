"""Seed 004's two-layer network, trained by hand in NumPy, checked against PyTorch's autograd.

The seed prints a NumPy program and a PyTorch program side by side: ``x (64, 1000) -> matmul w1 ->
ReLU -> matmul w2 -> (64, 10)``, loss ``sum((y_pred - y)^2)``, 500 steps of plain gradient descent at
learning rate 1e-6. Its NumPy backward pass has a mistake: it copies the gradient through the ReLU
(``grad_h = grad_h_relu.copy()``) but never zeroes it where the ReLU was off, the line the PyTorch
version has (``grad_h[h < 0] = 0``). So its ``grad_w1`` is not the gradient of the loss.

This script runs the three versions from the same random numbers (float64) and prints:

- how far each hand-written ``grad_w1`` is from autograd's at step 0 (the seed's NumPy: far; with
  the mask, i.e. cnnlab's ``reference.relu_backward``: equal to rounding);
- the loss every 100 steps for each version.

Run it with ``.venv/bin/python examples/two_layer_net.py [--steps 500] [--seed 0]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.reference.ops import relu_backward, relu_forward

N, D_IN, H, D_OUT = 64, 1000, 100, 10  # the seed's sizes
LEARNING_RATE = 1e-6


@dataclass(frozen=True)
class Problem:
    """The seed's random data and starting weights (float64)."""

    x: np.ndarray  # (N, D_in)
    y: np.ndarray  # (N, D_out)
    w1: np.ndarray  # (D_in, H)
    w2: np.ndarray  # (H, D_out)


def make_problem(seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    return Problem(rng.standard_normal((N, D_IN)), rng.standard_normal((N, D_OUT)),
                   rng.standard_normal((D_IN, H)), rng.standard_normal((H, D_OUT)))  # fmt: skip


Grads = tuple[float, np.ndarray, np.ndarray]  # loss, grad_w1, grad_w2
Step = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Grads]


def seed_numpy_step(x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> Grads:
    """Lines 19-34 of the seed's NumPy program, as printed (no ReLU mask in the backward pass)."""
    h = np.matmul(x, w1)
    h_relu = np.maximum(h, 0)
    y_pred = np.matmul(h_relu, w2)
    loss = float(((y_pred - y) ** 2).sum())
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = np.matmul(h_relu.T, grad_y_pred)
    grad_h_relu = np.matmul(grad_y_pred, w2.T)
    grad_h = grad_h_relu.copy()  # the seed stops here: the gradient also flows where the ReLU was off
    grad_w1 = np.matmul(x.T, grad_h)
    return loss, grad_w1, grad_w2


def masked_numpy_step(x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> Grads:
    """The same program with the ReLU's backward pass done right (cnnlab's NumPy reference ReLU)."""
    h = np.matmul(x, w1)
    h_relu, on = relu_forward(h)
    y_pred = np.matmul(h_relu, w2)
    loss = float(((y_pred - y) ** 2).sum())
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = np.matmul(h_relu.T, grad_y_pred)
    grad_h = relu_backward(np.matmul(grad_y_pred, w2.T), on)  # = the seed's PyTorch line 33: grad_h[h < 0] = 0
    grad_w1 = np.matmul(x.T, grad_h)
    return loss, grad_w1, grad_w2


def autograd_step(x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> Grads:
    """The reference: the same forward pass in PyTorch, gradients from autograd."""
    tw1 = torch.from_numpy(w1).requires_grad_()
    tw2 = torch.from_numpy(w2).requires_grad_()
    y_pred = torch.from_numpy(x).matmul(tw1).clamp(min=0).matmul(tw2)
    loss = ((y_pred - torch.from_numpy(y)) ** 2).sum()
    grad_w1, grad_w2 = torch.autograd.grad(loss, (tw1, tw2))
    return float(loss.detach()), grad_w1.numpy(), grad_w2.numpy()


def train(step: Step, problem: Problem, steps: int = 500) -> list[float]:
    """Plain gradient descent as in the seed; the loss before each step."""
    w1, w2 = problem.w1.copy(), problem.w2.copy()
    losses = []
    for _ in range(steps):
        loss, grad_w1, grad_w2 = step(problem.x, problem.y, w1, w2)
        losses.append(loss)
        w1 -= LEARNING_RATE * grad_w1
        w2 -= LEARNING_RATE * grad_w2
    return losses


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


STEPS: dict[str, Step] = {"seed's NumPy": seed_numpy_step, "NumPy + ReLU mask": masked_numpy_step,
                          "PyTorch autograd": autograd_step}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="gradient-descent steps (the seed: 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data and the starting weights")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1; received {args.steps}.")
    problem = make_problem(args.seed)
    _, ref_w1, ref_w2 = autograd_step(problem.x, problem.y, problem.w1, problem.w2)
    print("grad_w1 at step 0, largest difference from autograd relative to its largest entry:")
    for name in ("seed's NumPy", "NumPy + ReLU mask"):
        _, grad_w1, grad_w2 = STEPS[name](problem.x, problem.y, problem.w1, problem.w2)
        errors = f"grad_w1 {relative_error(grad_w1, ref_w1):.2e}   grad_w2 {relative_error(grad_w2, ref_w2):.2e}"
        print(f"  {name:18s} {errors}   cosine of grad_w1 with autograd's {cosine(grad_w1, ref_w1):.4f}")
    curves = {name: train(step, problem, args.steps) for name, step in STEPS.items()}
    shown = sorted({*range(0, args.steps, 100), args.steps - 1})
    print(f"\nloss (sum of squares) before step t, learning rate {LEARNING_RATE:g}:")
    print(f"  {'t':>5s}" + "".join(f"{name:>20s}" for name in curves))
    for t in shown:
        print(f"  {t:5d}" + "".join(f"{curve[t]:20.6g}" for curve in curves.values()))
    seed_curve = curves["seed's NumPy"]
    same = max(abs(a - b) / b for a, b in zip(curves["NumPy + ReLU mask"], curves["PyTorch autograd"], strict=True))
    print(f"\nWith the mask, the NumPy run follows autograd's (largest relative loss difference {same:.1e}).")
    if seed_curve[-1] < seed_curve[0]:
        print("The seed's NumPy run is not gradient descent on this loss, yet its loss falls too: its grad_w1 "
              "treats the ReLU as the identity, a direction that still has a positive cosine with the true "
              "gradient (above), so the mistake goes unnoticed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
