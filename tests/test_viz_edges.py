"""``viz edges``: every kernel is drawn, long images stay visible, a flat image has no 'strongest' edge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.viz.edges import DEFAULT_KERNELS, edge_figure


def test_every_default_kernel_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[str] = []
    real = Axes.set_title

    def spy(self: Axes, label: str, *args: object, **kwargs: object) -> object:
        titles.append(label)
        return real(self, label, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Axes, "set_title", spy)
    edge_figure(torch.rand(1, 12, 12) * 255)
    assert [t for t in titles if t.startswith("kernel ")] == [f"kernel {k}" for k in DEFAULT_KERNELS]  # not 3 of 6


def _ink(picture: np.ndarray) -> float:
    return float((picture.min(axis=2) < 200).mean())  # share of pixels that are not (near) white


def test_a_long_image_fills_its_panels() -> None:
    g = torch.Generator().manual_seed(0)
    wide = torch.randint(0, 255, (1, 3, 500), generator=g).to(torch.uint8)
    square = torch.randint(0, 255, (1, 40, 40), generator=g).to(torch.uint8)
    # a 3x500 image was drawn as hairlines (blank panels): now it inks about as much as a square one
    assert _ink(edge_figure(wide)) > 0.6 * _ink(edge_figure(square))


def test_flat_image_has_no_strongest_edge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(black)
    assert main(["viz", "edges", str(black), "--out", str(tmp_path / "e.png")]) == 0
    text = capsys.readouterr().out
    assert "strongest" not in text and text.count("max |response|      0.0, no edges") == len(DEFAULT_KERNELS)
    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3, 500), dtype=np.uint8)).save(wide)
    assert main(["viz", "edges", str(wide), "--out", str(tmp_path / "w.png")]) == 0
    assert "note: the image is 3x500 (HxW); its panels are stretched to fill the picture" in capsys.readouterr().out
