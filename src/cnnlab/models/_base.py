"""The face every model family shares, so training, benchmarks and pictures never special-case one.

``forward(x) == forward_head(forward_features(x))``; ``num_features`` is the channel count that
``forward_features`` returns; ``reset_classifier(n)`` replaces the head with a fresh one for ``n``
classes (the transfer-learning entry point).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class CnnModel(Protocol):
    """Structural type of every registered model (timm's ``forward_features``/``forward_head``)."""

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...

    def reset_classifier(self, num_classes: int) -> None: ...
