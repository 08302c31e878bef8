"""Feature maps of a named non-activation layer: labelled as its output, negatives measured where they matter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cnnlab.viz.features import MAX_MAP_SIDE, feature_figure, feature_stages


def _conv_bn_relu() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(4), nn.ReLU())
    with torch.no_grad():
        net[2].running_mean.fill_(0.3)  # BN shifts the maps, so the ReLU sees other signs than the pool's output
    return net.eval()


def test_named_layer_is_its_output_and_negatives_come_from_the_activation_input() -> None:
    net = _conv_bn_relu()
    x = torch.rand(1, 1, 16, 16)
    (stage,) = feature_stages(net, x, ["1"])
    with torch.no_grad():
        pooled = net[1](net[0](x))[0]
        normed = net[2](pooled[None])[0]
    assert stage.pre_is_output and stage.activation == "3"
    torch.testing.assert_close(stage.pre, pooled)  # the pool's output (8x8), not its 16x16 input
    assert stage.negative_share == float((normed < 0).float().mean())  # what the ReLU received
    assert stage.negative_share != float((pooled < 0).float().mean())
    (relu,) = feature_stages(net, x, ["3"])
    assert not relu.pre_is_output and relu.negative_share == stage.negative_share  # both views agree


def test_figure_labels_output_and_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnlab.viz.features as features

    stages = feature_stages(_conv_bn_relu(), torch.rand(1, 1, 16, 16), ["1", "3"])
    texts: list[str] = []
    real = features.label_image

    def spy(image: np.ndarray, text: str, height: int = 14) -> np.ndarray:
        texts.append(text)
        return real(image, text, height)

    monkeypatch.setattr(features, "label_image", spy)
    feature_figure(stages, tmp_path / "f.png")
    assert texts[0] == "1 (MaxPool2d) output 4x8x8"  # it said "input": the pool's input is 4x16x16
    assert texts[1].startswith("1 after activation 3 (") and "of its inputs were negative" in texts[1]
    assert texts[2] == "3 (ReLU) input 4x8x8"


def test_big_maps_are_averaged_down(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU()).eval()
    stages = feature_stages(net, torch.rand(1, 1, 600, 300))
    picture = feature_figure(stages, tmp_path / "big.png")
    # 2 maps of at most MAX_MAP_SIDE px side by side (2 px gaps), two rows with 14 px labels and 10 px gap
    assert picture.shape[1] == 2 * (MAX_MAP_SIDE + 2) + 2
    assert picture.shape[0] <= 2 * (MAX_MAP_SIDE + 4 + 14) + 10
    assert Image.open(tmp_path / "big.png").size == (picture.shape[1], picture.shape[0])


class _Block(nn.Module):
    """A residual block: its output is relu(conv(x) + x), made by its own code, not by a child."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x) + x)


def test_a_block_name_shows_the_block_output_as_rf_and_gradcam_accept_it() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Sequential(_Block(), nn.MaxPool2d(2)), nn.Flatten()).eval()
    x = torch.rand(1, 1, 8, 8)
    block, stage = feature_stages(net, x, ["1.0", "1"])
    with torch.no_grad():
        inner = net[1][0](net[0](x))[0]
    assert (block.name, block.type, block.pre_is_output, block.post) == ("1.0", "_Block", True, None)
    torch.testing.assert_close(block.pre, inner)  # the block's own relu(conv + x), which no leaf outputs
    assert stage.type == "Sequential" and stage.pre.shape == (2, 4, 4)
    torch.testing.assert_close(stage.pre, nn.functional.max_pool2d(inner[None], 2)[0])
    with pytest.raises(ValueError, match=r"--layers '2' outputs shape \(1, 32\), not a feature map"):
        feature_stages(net, x, ["2"])
    with pytest.raises(ValueError, match=r"--layers 'nope' is not a module called in the forward pass"):
        feature_stages(net, x, ["nope"])
