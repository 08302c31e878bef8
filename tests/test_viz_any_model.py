"""``cnnlab viz filters|features|gradcam`` on any model, not only a run: registered names and ``file.py:factory``.

A factory may return the user's own trained weights, so the pictures must show exactly those weights;
a model that declares no input size runs on the image at its own size, and when that fails the error
says how to declare the size.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cnnlab.cli.main import main

# conv weights the factory sets, and a head whose class 1 sees only negative evidence
_NETS = textwrap.dedent(
    """
    import torch
    import torch.nn as nn

    def known():
        torch.manual_seed(7)
        net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(5, 2))
        with torch.no_grad():
            net[0].weight.copy_(torch.arange(5 * 3 * 9, dtype=torch.float32).view(5, 3, 3, 3).sin())
            net[4].weight.copy_(torch.tensor([[1.0] * 5, [-1.0] * 5]))
        return net

    def fixed_size():
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    """
)


@pytest.fixture()
def nets(tmp_path: Path) -> Path:
    path = tmp_path / "nets.py"
    path.write_text(_NETS)
    return path


def _png(path: Path, h: int, w: int, channels: int = 3) -> Path:
    rng = np.random.default_rng(h * 100 + w)
    arr = rng.integers(0, 255, (h, w, channels) if channels == 3 else (h, w), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _cli(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_filters_of_a_factory_show_its_own_weights(
    nets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnlab.viz.filters import kernel_grid

    out = tmp_path / "k.png"
    code, text, err = _cli(["viz", "filters", f"{nets}:known", "--out", out], capsys)
    assert code == 0, err
    assert "its weights are the ones known() returned" in text and "weight 5x3x3x3, 5 tiles" in text
    expected = kernel_grid(torch.arange(5 * 3 * 9, dtype=torch.float32).view(5, 3, 3, 3).sin()).image
    np.testing.assert_array_equal(np.asarray(Image.open(out).convert("RGB")), expected)


def test_features_of_a_registered_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f.png"
    code, text, err = _cli(
        ["viz", "features", "lenet5", "--image", _png(tmp_path / "x.png", 20, 30), "--out", out], capsys
    )
    assert code == 0, err
    assert "lenet5 is a model, not a run of `cnnlab train`: its weights are freshly initialised" in text
    assert "resized" in text and "to 32x32" in text  # lenet5 declares 1x32x32
    assert out.is_file() and "wrote" in text


def test_gradcam_of_a_factory_takes_target_and_says_when_the_map_is_empty(
    nets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _png(tmp_path / "x.png", 12, 12)
    code, text, err = _cli(["viz", "gradcam", f"{nets}:known", "--image", image, "--out", tmp_path / "a.png"], capsys)
    assert code == 0, err
    assert "Grad-CAM of class '0'" in text and "Grad-CAM peak at input row" in text  # relu maps, +1 weights
    code, text, err = _cli(
        ["viz", "gradcam", f"{nets}:known", "--image", image, "--target", 1, "--out", tmp_path / "b.png"], capsys
    )
    assert code == 0, err
    # class 1 weighs every (non-negative) map by -1/n: relu(...) is 0, there is no peak to report
    assert "Grad-CAM is 0 everywhere: no position of layer" in text and "peak at" not in text


def test_undeclared_input_size_says_how_to_declare_it(
    nets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _png(tmp_path / "x.png", 5, 7, channels=1)
    code, _, err = _cli(
        ["viz", "features", f"{nets}:fixed_size", "--image", image, "--out", tmp_path / "f.png"], capsys
    )
    assert code == 2
    assert "fixed_size declares no input size, so the image ran at its own size 5x7 (HxW)" in err
    assert "input_size = (C, H, W) beside the factory" in err and "Traceback" not in err
    assert not (tmp_path / "f.png").exists()
    nets.write_text(_NETS + "\ninput_size = (1, 8, 8)\n")  # declared: the image is resized to it
    code, text, err = _cli(
        ["viz", "features", f"{nets}:fixed_size", "--image", image, "--out", tmp_path / "f.png"], capsys
    )
    assert code == 0, err
    assert "resized" in text and "to 8x8" in text


def test_a_missing_path_is_not_called_an_unregistered_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "runs" / "typo"
    for picture in (["filters"], ["features", "--image", "fashion-mnist:0"]):
        code, _, err = _cli(["viz", *picture, missing], capsys)
        assert code == 2
        assert f"MODEL_OR_RUN '{missing}' does not exist; pass a run directory of `cnnlab train`" in err
        assert "not registered" not in err


def test_a_runs_model_json_stands_for_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.models import create_model
    from cnnlab.train.checkpoint import save_model

    torch.manual_seed(0)
    net: nn.Module = create_model("lenet5")
    meta = {
        "model": "lenet5", "model_kwargs": {}, "num_classes": 10, "in_chans": 1, "input_size": [1, 32, 32],
        "normalization": {"mean": [0.5], "std": [0.5]},
    }  # fmt: skip
    save_model(net.eval(), meta, tmp_path / "run")
    code, text, err = _cli(["viz", "filters", tmp_path / "run" / "model.json"], capsys)
    assert code == 0, err
    assert "not a run" not in text and (tmp_path / "run" / "viz" / "filters-features.0.png").is_file()
