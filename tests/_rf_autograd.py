"""Receptive fields measured with autograd: the reference the analysis tests compare against.

With float64, positive weights and a positive input nothing cancels, so the gradient of one output unit
is non-zero exactly on the units that reach it.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def positive(*modules: nn.Module) -> None:
    """Every parameter drawn from [0.5, 1.5): positive and unequal, so no gradient cancels (seeded: repeatable)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)


def widest_reach(y: torch.Tensor, x: torch.Tensor, k: int = 1, s: int = 1) -> tuple[int, int]:
    """Largest (H, W) field over the units of ``y`` (1, C', H', W'), channels summed, back to ``x`` (1, C, H, W).

    Unit ``u`` of ``x`` sees pixels ``u*s - p .. u*s - p + k - 1`` (a k/s/p conv's textbook span; ``k = s = 1``
    when ``x`` is the input itself), so units ``u0 .. u1`` of ``x`` span ``(u1 - u0)*s + k`` pixels. One backward
    per unit of ``y``, batched; a unit that reaches no unit of ``x`` (it reads padding alone) adds nothing.
    """
    units = y.sum(1)[0].flatten()  # (H'*W',): one output unit per row of the batched gradient
    eye = torch.eye(units.numel(), dtype=units.dtype)
    (grads,) = torch.autograd.grad(units, x, eye, is_grads_batched=True)  # (H'*W', 1, C, H, W)
    best = [0, 0]
    for g in grads:
        seen = g[0].abs().sum(0) > 0  # (H, W): the units of x that reach this unit
        for axis, hit in enumerate((seen.any(1), seen.any(0))):
            idx = hit.nonzero().flatten()
            if len(idx):
                best[axis] = max(best[axis], int(idx[-1] - idx[0]) * s + k)
    return best[0], best[1]
