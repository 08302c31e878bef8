"""Custom ``nn.Module`` building blocks (depends on :mod:`cnnlab.arith` and torch only).

Every layer is a plain ``nn.Module``, and wherever one can be, a subclass of the torch layer it
extends (``Conv2d`` is an ``nn.Conv2d``, ``SumPool2d`` an ``nn.AvgPool2d``, the P4 convolutions are
``nn.Conv2d`` with parametrized weights), so counters, exporters and graph tools treat them as such.

>>> from cnnlab.layers import Conv2d
>>> Conv2d(1, 4, 2, stride=2, padding="same")(torch.zeros(1, 1, 5, 5)).shape
torch.Size([1, 4, 3, 3])
"""

from cnnlab.layers.blocks import ConvBNAct
from cnnlab.layers.conv import PADDING_MODES, Conv1d, Conv2d, Conv3d
from cnnlab.layers.edges import EDGE_KERNELS, EdgeFilter2d
from cnnlab.layers.gated import Gate, GatedConv2d
from cnnlab.layers.matmul_grad import MatmulGradConv2d
from cnnlab.layers.p4 import (
    P4BatchNorm,
    P4GroupConv2d,
    P4LiftConv2d,
    P4MaxPool2d,
    P4RotationPool,
    p4_rotate,
    rotation_pool,
)
from cnnlab.layers.pool import MaxPool2dIndices, MaxUnpool2d, SumPool2d
from cnnlab.layers.resize import ResizeConv2d

__all__ = [
    "EDGE_KERNELS",
    "PADDING_MODES",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvBNAct",
    "EdgeFilter2d",
    "Gate",
    "GatedConv2d",
    "MatmulGradConv2d",
    "MaxPool2dIndices",
    "MaxUnpool2d",
    "P4BatchNorm",
    "P4GroupConv2d",
    "P4LiftConv2d",
    "P4MaxPool2d",
    "P4RotationPool",
    "ResizeConv2d",
    "SumPool2d",
    "p4_rotate",
    "rotation_pool",
]
