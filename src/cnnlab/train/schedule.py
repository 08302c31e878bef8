"""Learning-rate schedules as pure functions of the optimizer step.

A schedule maps ``(step, total_steps)`` to a multiplier of the peak learning rate; the loop sets
``lr = peak * factor`` before every step. Being a function of the step alone, it needs no state of
its own in a checkpoint: a resumed run recomputes the same learning rate.

>>> [round(lr_factor("linear", s, 10, warmup_steps=2), 2) for s in (0, 1, 2, 6, 9)]
[0.5, 1.0, 1.0, 0.5, 0.12]
"""

from __future__ import annotations

import math

__all__ = ["lr_factor"]


def lr_factor(
    schedule: str,
    step: int,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    steps_per_epoch: int = 1,
    step_epochs: int = 1,
    step_gamma: float = 0.7,
) -> float:
    """Multiplier of the peak learning rate at optimizer ``step`` (0-based) of ``total_steps``.

    - ``cosine``: linear warm-up, then ``0.5 * (1 + cos(pi * t))`` down to 0;
    - ``linear``: linear warm-up, then linear decay to 0;
    - ``onecycle``: Smith's one-cycle, a triangle: up from 0.1 over the first 25% of the steps,
      down to 0 at the end (``warmup_steps`` is ignored);
    - ``step``: ``step_gamma ** (epoch // step_epochs)`` (the PyTorch MNIST example's StepLR);
    - ``constant``: linear warm-up, then 1.

    >>> lr_factor("step", 25, 100, steps_per_epoch=10, step_gamma=0.5)
    0.25
    """
    total = max(total_steps, 1)
    if schedule == "onecycle":
        peak = max(int(0.25 * total), 1)
        if step < peak:
            return 0.1 + 0.9 * (step + 1) / peak
        return max(0.0, (total - step) / max(total - peak, 1))
    if schedule == "step":
        return float(step_gamma ** ((step // max(steps_per_epoch, 1)) // max(step_epochs, 1)))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(total - warmup_steps, 1)  # 0 -> 1 over the decay phase
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "linear":
        return 1.0 - t
    if schedule == "constant":
        return 1.0
    raise ValueError(
        f"schedule must be one of cosine, linear, onecycle, step, constant; received {schedule!r}."
    )
