"""Grad-CAM's --layer errors: name the option, list the modules, echo the shape, point to the default."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.viz.gradcam import grad_cam


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.spare = nn.Conv2d(4, 4, 1)  # defined, never called
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean((2, 3)))  # (N, 4, H, W) -> (N, 4) -> (N, 3)


def test_unknown_layer_lists_the_modules() -> None:
    with pytest.raises(
        ValueError, match=r"--layer must name a module of _Net; received 'nope'\..* Leaf modules: conv, "
    ):
        grad_cam(_Net(), torch.rand(1, 1, 6, 6), layer="nope")


def test_a_layer_without_a_map_echoes_its_shape_and_the_default() -> None:
    with pytest.raises(ValueError, match=r"--layer 'fc' outputs shape \(1, 3\), not a feature map .* e\.g\. 'act'"):
        grad_cam(_Net(), torch.rand(1, 1, 6, 6), layer="fc")


def test_a_layer_that_never_runs_says_so() -> None:
    with pytest.raises(ValueError, match=r"--layer 'spare' was not called in the forward pass, not a feature map"):
        grad_cam(_Net(), torch.rand(1, 1, 6, 6), layer="spare")
