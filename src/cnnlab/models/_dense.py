"""The shared face of per-pixel models (U-Net, SegNet, the autoencoder): a 1x1-conv head on a full-size map.

``forward_features`` returns the last full-resolution decoder map ``(B, num_features, H, W)``;
``forward_head`` is the 1x1 convolution to one channel per class (or per output channel);
``reset_classifier(n)`` replaces it, which is how a segmentation net is fine-tuned to new classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class DenseHeadModel(nn.Module):
    """Base class: subclasses set ``self.num_features`` and ``self.head`` and define ``forward_features``."""

    num_features: int
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define forward_features")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return x
        out: torch.Tensor = self.head(x)  # (B, num_features, H, W) -> (B, num_classes, H, W)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the output 1x1 conv with one giving ``num_classes`` output channels."""
        self.head = nn.Conv2d(self.num_features, num_classes, 1)
