"""Custom ``nn.Module`` building blocks (depends on :mod:`cnnlab.arith` and torch only)."""

from cnnlab.layers.conv import Conv1d, Conv2d, Conv3d

__all__ = ["Conv1d", "Conv2d", "Conv3d"]
