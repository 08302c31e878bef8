"""Learning-rate schedules as pure functions of the optimizer step.

A schedule maps ``(step, total_steps)`` to a multiplier of the peak learning rate; the loop sets
``lr = peak * factor`` before every step. Being a function of the step alone, it needs no state of
its own in a checkpoint: a resumed run recomputes the same learning rate.

>>> [round(lr_factor("linear", s, 10, warmup_steps=2), 2) for s in (0, 1, 2, 6, 9)]
[0.5, 1.0, 1.0, 0.5, 0.12]
"""

from __future__ import annotations

import math

from cnnlab.train.config import SCHEDULES

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
    - ``onecycle``: Smith's one-cycle, a triangle over ``peak = int(0.25 * total_steps)`` steps up and
      the rest down: ``0.1 + 0.9 * (step + 1) / peak`` (1 at steps ``peak - 1`` and ``peak``), then
      ``(total_steps - step) / (total_steps - peak)``, which would be 0 at ``step = total_steps``;
      ``warmup_steps`` is ignored. Against ``torch.optim.lr_scheduler.OneCycleLR`` (``pct_start=0.25``,
      ``anneal_strategy="linear"``) the warm-up runs about one step ahead (step 0 has ``0.1 + 0.9 / peak``,
      not 0.1), the peak lasts two steps, and the decay runs one step behind (the last step has
      ``1 / (total_steps - peak)``, not the floor);
    - ``step``: ``step_gamma ** (epoch // step_epochs)`` (the PyTorch MNIST example's StepLR;
      ``warmup_steps`` is ignored);
    - ``constant``: linear warm-up, then 1.

    Warm-up and ``cosine``/``linear`` equal torch's ``SequentialLR`` of ``LinearLR(start_factor=1 /
    warmup_steps, total_iters=warmup_steps - 1)`` and ``CosineAnnealingLR(T_max=total_steps -
    warmup_steps)`` (or ``LinearLR(1, 0, total_iters=total_steps - warmup_steps)``), stepped once per step.

    >>> lr_factor("step", 25, 100, steps_per_epoch=10, step_gamma=0.5)
    0.25
    >>> [round(lr_factor("onecycle", s, 8), 3) for s in range(8)]
    [0.55, 1.0, 1.0, 0.833, 0.667, 0.5, 0.333, 0.167]
    """
    if schedule not in SCHEDULES:  # checked first: a warm-up step must not hide a misspelt name
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; received {schedule!r}.")
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
    return 1.0  # constant
