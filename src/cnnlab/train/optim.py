"""Optimizers with the Bag-of-Tricks parameter groups (no weight decay on biases and norms).

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
>>> [len(g["params"]) for g in param_groups(net, weight_decay=5e-4)]
[1, 3]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from cnnlab.train.config import TrainConfig

__all__ = ["build_optimizer", "param_groups", "peak_lr"]


def param_groups(model: nn.Module, weight_decay: float, no_decay_bias_norm: bool = True) -> list[dict[str, Any]]:
    """Trainable parameters split into a decayed group and a group without weight decay.

    Biases and the scale/shift of normalisation layers (any parameter with fewer than 2 dimensions)
    get no weight decay: shrinking them does not regularise the function and hurts accuracy
    (He et al., Bag of Tricks, 2019, section 3.1). Frozen parameters are left out.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_decay_bias_norm and p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def peak_lr(cfg: TrainConfig) -> float:
    """The peak learning rate: ``lr * batch_size / 256`` with the linear scaling rule, else ``lr``.

    >>> peak_lr(TrainConfig(lr=0.1, batch_size=512))
    0.2
    """
    return cfg.lr * cfg.batch_size / 256 if cfg.scale_lr else cfg.lr


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), AdamW or Adadelta over :func:`param_groups`, at the peak lr."""
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_bias_norm)
    if not any(g["params"] for g in groups):
        raise ValueError(
            "the model has no trainable parameters (all are frozen); use --freeze none or a model with "
            "a trainable head."
        )
    lr = peak_lr(cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(groups, lr=lr)
    raise ValueError(f"optimizer must be one of sgd, adamw, adadelta; received {cfg.optimizer!r}.")
