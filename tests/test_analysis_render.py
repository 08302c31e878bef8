"""Renderers: golden snapshots of a small model, totals equal column sums, same numbers in every format.

Regenerate the snapshots after an intended change with ``CNNLAB_UPDATE_GOLDEN=1 pytest tests/test_analysis_render.py``
and review the diff.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnlab.analysis import analyze
from cnnlab.analysis.render import render

GOLDEN = Path(__file__).parent / "golden"


class TinyResNet(nn.Module):
    """Stem, one residual block with a strided shortcut, global pooling and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.shortcut = nn.Conv2d(8, 16, 1, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.body(x) + self.shortcut(x)
        return self.head(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    return analyze(TinyResNet(), (3, 16, 16), name="tiny_resnet")


GOLDEN_CASES = [
    ("text", None, "txt"), ("text", 0, "depth0.txt"), ("md", None, "md"), ("csv", None, "csv"), ("json", None, "json")
]


@pytest.mark.parametrize(("fmt", "depth", "suffix"), GOLDEN_CASES)
def test_golden(report, fmt: str, depth: int | None, suffix: str) -> None:  # type: ignore[no-untyped-def]
    text = render(report, fmt, depth)
    path = GOLDEN / f"tiny_resnet.{suffix}"
    if os.environ.get("CNNLAB_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing snapshot {path}: run with CNNLAB_UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text()


def _csv_rows(text: str) -> list[dict[str, str]]:
    body = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.parametrize("depth", [None, 0, 1])
def test_totals_are_column_sums(report, depth: int | None) -> None:  # type: ignore[no-untyped-def]
    rows = _csv_rows(render(report, "csv", depth))
    total = rows[-1]
    assert total["layer"] == "total"
    for col in ("params", "macs", "connections", "activation_bytes"):
        assert sum(int(r[col]) for r in rows[:-1]) == int(total[col]), col


def test_same_numbers_in_every_format(report) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(render(report, "json"))
    total = _csv_rows(render(report, "csv"))[-1]
    t = data["totals"]
    expected = (report.totals.params, report.totals.macs)
    assert (int(total["params"]), int(total["macs"])) == (t["params"], t["macs"]) == expected
    for text in (render(report, "text"), render(report, "md")):
        assert f"{t['params']:,}" in text and f"{t['macs']:,}" in text and f"{t['connections']:,}" in text
        assert "MAC = one multiply-add" in text
    assert "MAC = one multiply-add" in data["convention"] and "MAC = one multiply-add" in render(report, "csv")
    assert set(data) >= {"model", "input_shape", "totals", "layers", "warnings"}
    assert set(t) >= {"params", "trainable_params", "macs", "flops", "activation_bytes"}
    layer = data["layers"][1]
    assert set(layer) >= {"name", "type", "output_shape", "params", "macs", "rf"}
    assert set(layer["rf"]) >= {"size", "jump", "start"}
    assert data["warnings"] and set(data["warnings"][0]) >= {"rule", "layer", "message"}


def test_bad_format_and_depth(report) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="--format must be one of"):
        render(report, "xml")
    with pytest.raises(ValueError, match="--depth must be 0 or more"):
        render(report, "text", -1)
