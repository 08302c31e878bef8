"""``cnnlab viz ...`` end to end, in-process, on a run directory of a tiny model trained to find a bright square.

The run is written with the real checkpoint code (``save_model``) for a model registered for the
duration of this module, so ``load_run`` rebuilds it like any trained run. Each test reads the
numbers the command prints and the pictures it writes, and checks them against the library.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.viz.hooks import one_thread

SIZE, SQUARE = 24, 6
MODEL = "viz_test_squares"


def _net(num_classes: int = 2, in_chans: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def _batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images (0..1); class 1 holds a bright 6x6 square, class 0 a bright 2x12 bar."""
    x = torch.rand(n, 1, SIZE, SIZE, generator=g) * 90
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        r, c = torch.randint(0, SIZE - SQUARE, (2,), generator=g).tolist()
        if y[i] == 1:
            x[i, 0, r : r + SQUARE, c : c + SQUARE] = 230
        else:
            x[i, 0, r + 2 : r + 4, max(0, c - 3) : c + 9] = 230
    return x / 255, y


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from cnnlab.models import _registry
    from cnnlab.train.checkpoint import save_model

    _registry.register_model(MODEL, family="test", input_size=(1, SIZE, SIZE), num_classes=2)(_net)
    try:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        net = _net()
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        with one_thread():  # a tiny net: a second thread only adds hand-offs
            for _ in range(100):
                x, y = _batch(48, g)
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
        run = tmp_path_factory.mktemp("squares-run")
        meta = {
            "model": MODEL, "model_kwargs": {}, "num_classes": 2, "in_chans": 1, "input_size": [1, SIZE, SIZE],
            "classes": ["bar", "square"], "normalization": {"mean": [0.0], "std": [1.0]}, "task": "classification",
        }  # fmt: skip
        save_model(net.eval(), meta, run)
        yield run
    finally:
        _registry._REGISTRY.pop(MODEL, None)


def _square_png(path: Path, top: int, left: int, rgb: bool = False) -> Path:
    rng = np.random.default_rng(top * 31 + left)
    img = rng.integers(0, 90, (SIZE, SIZE), dtype=np.uint8)
    img[top : top + SQUARE, left : left + SQUARE] = 230
    Image.fromarray(np.stack([img] * 3, -1) if rgb else img).save(path)
    return path


def _cli(args: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _flat(err: str) -> str:
    return " ".join(err.split())  # the error paragraph is wrapped at 100 columns


# ----------------------------------------------------------------------------------------------- filters


def test_filters_one_tile_per_filter(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k.png"
    code, text, _ = _cli(["viz", "filters", run_dir, "--out", out], capsys)
    assert code == 0 and f"wrote {out}" in text
    img = np.asarray(Image.open(out).convert("RGB"))
    # 8 filters of 3x3 drawn 30 px wide with 2 px gaps in a 3x3 grid: (3 * 32 + 2) px square
    assert img.shape == (98, 98, 3)
    # each kernel is normalised on its own, so every tile holds a black (minimum) pixel; empty cells do not
    cells = [img[2 + r * 32 : 32 + r * 32, 2 + c * 32 : 32 + c * 32] for r in range(3) for c in range(3)]
    assert sum(bool((cell.sum(-1) == 0).any()) for cell in cells) == 8

    deep = tmp_path / "k2.png"
    code, text, _ = _cli(["viz", "filters", run_dir, "--layer", "2", "--out", deep], capsys)
    assert code == 0 and "weight 16x8x3x3, 128 tiles in 16x8" in text  # by channel: a row per filter
    assert Image.open(deep).size == (8 * 32 + 2, 16 * 32 + 2)


def test_filters_default_output_goes_into_the_run(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = _cli(["viz", "filters", run_dir], capsys)
    assert code == 0 and f"wrote {run_dir / 'viz' / 'filters-0.png'}" in text
    assert (run_dir / "viz" / "filters-0.png").is_file()


# ---------------------------------------------------------------------------------------------- features


def test_features_before_and_after_activation(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = _square_png(tmp_path / "sq.png", 4, 10)
    out = tmp_path / "f.png"
    code, text, _ = _cli(["viz", "features", run_dir, "--image", img, "--out", out], capsys)
    assert code == 0
    assert "1 (ReLU): before 8x24x24, after activation 8x24x24" in text
    assert "6 (ReLU): before 16x12x12, after activation 16x12x12" in text
    assert f"wrote {out}" in text and "3 layers" in text
    width, height = Image.open(out).size
    assert width >= 16 * 24 and height > 6 * 24  # all 16 maps of a layer side by side; 3 layers x 2 rows

    code, text, _ = _cli(["viz", "features", run_dir, "--image", img, "--layers", "0", "--out", out], capsys)
    assert code == 0 and "0 (Conv2d): output 8x24x24, after activation 1 8x24x24" in text


# ------------------------------------------------------------------------------------------------- edges


def test_edges_of_a_vertical_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step = 13
    arr = np.zeros((20, 30), np.uint8)
    arr[:, :step] = 200  # bright left, dark right
    src = tmp_path / "step.png"
    Image.fromarray(arr).save(src)
    out = tmp_path / "edges.png"
    code, text, _ = _cli(["viz", "edges", src, "--out", out], capsys)
    assert code == 0 and f"wrote {out}" in text
    for name in ("vertical", "sobel_x", "scharr_x"):
        col = int(re.search(rf"{name}: .* strongest column (\d+)", text).group(1))  # type: ignore[union-attr]
        assert col in (step - 1, step), name  # the two columns either side of the step
    assert re.search(r"horizontal: max \|response\|\s+0\.0", text)
    assert Image.open(out).mode == "RGB" and Image.open(out).size[0] == 660
    code, text, _ = _cli(["viz", "edges", src, "--kernels", "laplacian", "prewitt_x", "--out", out], capsys)
    assert code == 0 and int(re.search(r"prewitt_x: .* strongest column (\d+)", text).group(1)) in (12, 13)  # type: ignore[union-attr]
    assert Image.open(out).size == (660, 430)  # input row + one row for the two kernels
    code, _, err = _cli(["viz", "edges", src, "--kernels", "sobel", "--out", out], capsys)
    assert code == 2 and "--kernels: unknown edge kernel(s) ['sobel']; choose from vertical" in _flat(err)


def test_edges_of_a_dataset_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.data import load_dataset
    from cnnlab.errors import DataError

    try:
        load_dataset("fashion-mnist", "test")
    except DataError as err:
        pytest.skip(f"Fashion-MNIST is not available here: {err}")
    out = tmp_path / "e.png"
    code, text, _ = _cli(["viz", "edges", "fashion-mnist:0", "--out", out], capsys)
    assert code == 0 and "for fashion-mnist:0 (Ankle boot)" in text and out.is_file()
    code, _, err = _cli(["viz", "edges", "fashion-mnist:99999", "--out", out], capsys)
    assert code == 2 and "asks for test image 99999, but the test split of 'fashion-mnist' has 10000" in _flat(err)


# ------------------------------------------------------------------------------------------ receptive field


def _numbers(pattern: str, text: str) -> tuple[float, ...]:
    m = re.search(pattern, text)
    assert m is not None, f"{pattern!r} not in:\n{text}"
    return tuple(float(v) for v in m.groups())


def test_rf_box_and_erf_number(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.analysis import analyze
    from cnnlab.train.checkpoint import load_run
    from cnnlab.viz.rf import receptive_field

    img = _square_png(tmp_path / "sq.png", 9, 9)
    out = tmp_path / "rf.png"
    code, text, _ = _cli(["viz", "rf", run_dir, "--layer", "5", "--image", img, "--out", out], capsys)
    assert code == 0 and f"wrote {out}" in text
    h, w, jump = _numbers(r"theoretical RF: (\d+)x(\d+) px \(jump (\d+)\)", text)
    model = load_run(run_dir).model
    row = analyze(model, (1, SIZE, SIZE)).layer("5")
    assert row.rf is not None
    assert (h, w) == tuple(row.rf.size) == (10, 10) and jump == row.rf.jump[0] == 2
    top, bottom, left, right = _numbers(r"box rows (-?\d+)\.\.(-?\d+), cols (-?\d+)\.\.(-?\d+)", text)
    assert (bottom - top + 1, right - left + 1) == (h, w)
    # the effective RF is printed beside the theoretical one, and is what the library computes
    radius, side = _numbers(r"95% of the gradient mass within radius ([\d.]+) px \(a (\d+)x\d+ px square", text)
    x = torch.from_numpy(np.asarray(Image.open(img), np.float32) / 255)[None, None]
    rf = receptive_field(model, "5", x)
    assert radius == pytest.approx(rf.erf_radius, abs=0.05) and side == rf.erf_size
    assert 0 < radius <= math.hypot(h / 2, w / 2) and side <= h
    assert Image.open(out).size == (800, 420)


def test_rf_of_an_untrained_registered_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "g.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20), dtype=np.uint8)).save(img)
    code, text, _ = _cli(
        ["viz", "rf", "lenet5", "--layer", "features.0", "--image", img, "--out", tmp_path / "r.png"], capsys
    )
    assert code == 0
    assert "resized" in text and "from 20x20 to 32x32" in text  # lenet5 declares 1x32x32
    assert "untrained model" in text and "theoretical RF: 5x5 px" in text
    code, _, err = _cli(["viz", "rf", "lenet5", "--layer", "features.9", "--image", img], capsys)
    assert code == 2 and "--layer must name a module of" in _flat(err) and "features.0" in err
    code, _, err = _cli(["viz", "rf", "lenet5", "--layer", "features.0", "--image", img, "--keep-size"], capsys)
    assert code == 2 and "drop it to resize the image to the model's input size" in _flat(err)
    # a negative unit reaches the ROW,COL check (argparse said "--unit: expected one argument")
    code, _, err = _cli(["viz", "rf", "lenet5", "--layer", "features.0", "--image", img, "--unit", "-1,0"], capsys)
    assert code == 2 and "--unit must lie in the 28x28 output of layer 'features.0'; received (-1, 0)" in _flat(err)


# ----------------------------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize(("top", "left", "rgb"), [(3, 14, False), (15, 4, True)])
def test_gradcam_peak_inside_the_square(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], top: int, left: int, rgb: bool
) -> None:
    img = _square_png(tmp_path / "sq.png", top, left, rgb=rgb)  # an RGB file is converted to gray
    out = tmp_path / "cam.png"
    code, text, _ = _cli(["viz", "gradcam", run_dir, "--image", img, "--out", out], capsys)
    assert code == 0, text
    assert "Grad-CAM of class 'square'" in text and "at layer 6 (12x12 map)" in text  # last spatial layer
    r, c = _numbers(r"peak at input row (\d+), col (\d+)", text)
    assert top <= r < top + SQUARE and left <= c < left + SQUARE
    assert Image.open(out).size == (900, 360)
    code, text, _ = _cli(["viz", "gradcam", run_dir, "--image", img, "--target", "bar", "--out", out], capsys)
    assert code == 0 and "Grad-CAM of class 'bar'" in text


# --------------------------------------------------------------------------------------------- bad images


def _forged_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (the pixel data is a tiny stub): no memory needed."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")))
    return path


def test_bad_images_give_one_clear_paragraph(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text_file = tmp_path / "notes.png"
    text_file.write_text("not pixels")
    good = _square_png(tmp_path / "ok.png", 2, 2, rgb=True)
    cut = tmp_path / "cut.png"
    big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "full.png")
    cut.write_bytes((tmp_path / "full.png").read_bytes()[:2000])
    huge = _forged_png(tmp_path / "huge.png", 8000, 8000)
    bomb = _forged_png(tmp_path / "bomb.png", 20000, 20000)  # past Pillow's own decompression-bomb guard
    cases = [
        (["--image", text_file], r"is not an image Pillow can read \(received 10 bytes"),
        (["--image", cut], r"is truncated or damaged"),
        (["--image", huge], r"has 8000x8000 = 64,000,000 pixels, more than the limit of 40,000,000; resize it"),
        (["--image", bomb], r"has more pixels than the limit of 40,000,000 \(Pillow: Image size \(400000000 pixels\)"),
        (["--image", good, "--no-convert"], r"has 3 channels \(mode RGB\) but the model expects 1"),
        (["--image", tmp_path / "nope.png"], r"does not exist"),
    ]
    for extra, wording in cases:
        code, _, err = _cli(["viz", "gradcam", run_dir, *extra], capsys)
        assert code == 2, extra
        assert err.startswith("error: image ") and "Traceback" not in err
        assert "\n\n" not in err.strip() and len(err.splitlines()) <= 5  # one short paragraph
        assert re.search(wording, _flat(err)), err


def test_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(["viz", "filters", tmp_path], capsys)
    assert code == 2 and "has no model.safetensors" in _flat(err)


# ---------------------------------------------------------------------------------------------- animation


def test_animate_writes_gif_and_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.arith import conv_transpose_out

    gif, frames = tmp_path / "t.gif", tmp_path / "frames"
    args = ["viz", "animate", "transposed", "--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1"]
    code, text, _ = _cli([*args, "--output-padding", "1", "--frames-dir", frames, "--out", gif], capsys)
    o = conv_transpose_out(3, 3, 2, 1, 1, 1)[0]
    assert code == 0 and o == 6 and f"-> output {o}x{o}" in text
    with Image.open(gif) as im:
        assert getattr(im, "n_frames", 1) == o * o
        size = im.size
    assert f"wrote {gif} ({o * o} frames of {size[0]}x{size[1]} px)" in text
    assert len(list(frames.glob("frame_*.png"))) == o * o and f"wrote {o * o} PNG frames" in text
    code, _, err = _cli(["viz", "animate", "conv", "--stride", "0", "--out", gif], capsys)
    assert code == 2 and "--stride must be an integer >= 1; received 0" in _flat(err)


def test_parsers_import_neither_torch_nor_numpy() -> None:
    # `cnnlab --help` builds every command's parser, so these must stay light
    import subprocess
    import sys

    code = (
        "import argparse, sys, cnnlab.cli.cmd_viz as v, cnnlab.cli.cmd_report as r\n"
        "for c in (v, r):\n"
        "    p = argparse.ArgumentParser(); c.add_arguments(p); p.format_help()\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'numpy', 'matplotlib', 'PIL')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
