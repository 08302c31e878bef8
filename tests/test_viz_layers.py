"""Which layer a picture looks at: blocks (containers) for the receptive field, the block output for Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnlab.analysis import analyze
from cnnlab.models import create_model
from cnnlab.viz.gradcam import grad_cam, last_spatial_layer
from cnnlab.viz.rf import receptive_field


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20").eval()


def test_gradcam_default_is_the_last_block_output(resnet20: nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32)
    assert last_spatial_layer(resnet20, x) == "layer3.2"  # not layer3.2.bn2, before the shortcut add
    res = grad_cam(resnet20, x)
    assert res.layer == "layer3.2" and res.raw_cam.shape == (8, 8)
    captured: list[torch.Tensor] = []
    handle = resnet20.layer3[2].register_forward_hook(lambda _m, _a, out: captured.append(out))
    with torch.no_grad():
        resnet20(x)
    handle.remove()
    assert float(captured[0].min()) >= 0  # after relu(out + shortcut); bn2's output has negatives


def test_gradcam_default_unchanged_for_plain_stacks() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.0), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert last_spatial_layer(net, torch.rand(1, 1, 8, 8)) == "1"  # the leaf; dropout passes it on


@pytest.mark.parametrize(("layer", "made_by"), [("layer1", "layer1.2.relu_1"), ("layer2.0", "layer2.0.relu_1")])
def test_rf_of_a_container_is_that_of_its_output(resnet20: nn.Module, layer: str, made_by: str) -> None:
    x = torch.randn(1, 3, 32, 32)
    rf = receptive_field(resnet20, layer, x)
    row = analyze(resnet20, (3, 32, 32)).layer(made_by)
    assert row.rf is not None
    assert rf.made_by == made_by and rf.size == tuple(row.rf.size)
    assert float(rf.erf.sum()) > 0


class _ReturnsItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        return x


def test_rf_of_a_container_that_returns_another_tensor_is_refused() -> None:
    net = nn.Sequential(_ReturnsItsInput(), nn.Conv2d(1, 2, 3))
    with pytest.raises(ValueError, match=r"--layer '0' returns \(1, 1, 16, 16\), not the \(1, 14, 14\) map .* leaf"):
        receptive_field(net, "0", torch.rand(1, 1, 16, 16))


def test_rf_unknown_layer_lists_close_modules(resnet20: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"received 'layr1'\. Did you mean layer1.*Leaf modules: conv1, bn1"):
        receptive_field(resnet20, "layr1", torch.randn(1, 3, 32, 32))
    net = _ReturnsItsInput()  # its conv runs, but nothing of it reaches the output
    net.unused = nn.Conv2d(2, 2, 1)  # never called
    with pytest.raises(ValueError, match=r"--layer 'unused' \(Conv2d\) does not run in the forward pass"):
        receptive_field(net, "unused", torch.rand(1, 1, 8, 8))


def test_rf_command_accepts_a_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from PIL import Image

    from cnnlab.cli.main import main

    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(img)
    code = main(["viz", "rf", "resnet20", "--layer", "layer1", "--image", str(img), "--out", str(tmp_path / "r.png")])
    text = capsys.readouterr().out
    assert code == 0 and "layer layer1 (a container; its output is made by layer1.2.relu_1)" in text
    assert "theoretical RF: 15x15 px" in text
