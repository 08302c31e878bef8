"""The report adapts to the run: segmentation overlays, reconstructions, damaged runs.

Two tiny models are registered for this module only and trained with the real ``fit()`` on the
generated ``shapes`` set, so the runs are what ``cnnlab train`` writes.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.viz.report import SECTIONS, write_report

SEG, AE = "viz_test_seg", "viz_test_autoencoder"


def _seg(num_classes: int = 4, in_chans: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(16, num_classes, 1),
    )  # fmt: skip


def _autoencoder(num_classes: int = 0, in_chans: int = 1) -> nn.Module:
    # a reconstruction model outputs its input's channels; num_classes is what fit() passes to every model
    del num_classes
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, in_chans, 3, padding=1),
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from cnnlab.models import _registry
    from cnnlab.train.loop import fit
    from cnnlab.train.recipes import resolve_recipe

    _registry.register_model(SEG, family="test", input_size=(1, 32, 32), num_classes=4, task="segmentation")(_seg)
    _registry.register_model(AE, family="test", input_size=(1, 32, 32), task="reconstruction")(_autoencoder)
    try:
        out = {}
        for name in (SEG, AE):
            cfg = resolve_recipe(
                "segmentation", {"model": name, "epochs": 1, "data_opts": {"n": 48, "size": 32}, "progress": "none"}
            )
            out[name] = fit(cfg, tmp_path_factory.mktemp(name)).run_dir
        yield out
    finally:
        for name in (SEG, AE):
            _registry._REGISTRY.pop(name, None)


def _section(page: str, key: str) -> str:
    return page.split(f'<section id="{key}">')[1].split("</section>")[0]


def _images(html: str) -> list[np.ndarray]:
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB")) for u in uris]


def test_segmentation_report_shows_overlays(runs: dict[str, Path]) -> None:
    page = write_report(runs[SEG]).read_text()
    assert [f'<section id="{k}">' in page for k in SECTIONS] == [True] * len(SECTIONS)
    assert "could not draw" not in page
    assert "segmentation run" in _section(page, "confusion") and "mean_iou" in _section(page, "confusion")
    examples = _section(page, "examples")
    assert 'alt="segmentation overlays"' in examples and len(_images(examples)) == 1
    cams = _section(page, "gradcam")
    assert 'alt="Seg-Grad-CAM"' in cams and "summed over the pixels predicted as that class" in cams
    assert len(_images(cams)) == 1
    assert len(_images(_section(page, "features"))) == 1 and len(_images(_section(page, "rf"))) == 1


def test_seg_grad_cam_command_on_a_segmentation_run(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "in.png"
    Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))).save(image)
    out = tmp_path / "cam.png"
    assert main(["viz", "gradcam", str(runs[SEG]), "--image", str(image), "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Seg-Grad-CAM of class" in text and "at layer" in text and out.stat().st_size > 0
    assert main(["viz", "gradcam", str(runs[SEG]), "--image", str(image), "--out", str(out), "--target", "0"]) == 0
    assert "Seg-Grad-CAM of class 'background'" in " ".join(capsys.readouterr().out.split())


def test_overlay_colours_foreground_only() -> None:
    from cnnlab.viz.curves import overlay, segmentation_figure

    base = np.full((8, 8, 3), 100.0)
    mask = np.zeros((8, 8), np.int64)
    mask[2:5, 3:7] = 2
    palette = np.array([[255.0, 0, 0], [0, 255.0, 0], [0, 0, 255.0]])
    out = overlay(base, mask, palette, alpha=0.5)
    assert (out[mask == 0] == 100).all()  # background untouched
    assert np.allclose(out[mask == 2], [50, 177.5, 50])  # class 2 -> palette[1], half blended
    picture = segmentation_figure(
        torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.from_numpy(np.stack([mask, mask])), torch.zeros(2, 8, 8)
    )
    assert picture.shape == (400, 600, 3)  # 2 rows x (image, truth, prediction) at 6 x 2 inches per row


def test_reconstruction_report_shows_inputs_and_outputs(runs: dict[str, Path]) -> None:
    page = write_report(runs[AE]).read_text()
    assert "could not draw" not in page
    assert "reconstruction run" in _section(page, "confusion") and "test MSE" in _section(page, "confusion")
    assert 'alt="reconstructions"' in _section(page, "examples")
    assert "not shown" in _section(page, "gradcam")


def test_damaged_run_still_gets_a_report(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(runs[AE], run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a copy that was cut off
    page = write_report(run).read_text()
    assert "model not loaded: checkpoint" in page and "is truncated" in page
    assert "not shown: the model could not be loaded" in _section(page, "kernels")
    assert len(_images(_section(page, "curves"))) == 1  # metrics.json still gives the curves


def test_report_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "holds neither model.json nor metrics.json" in " ".join(capsys.readouterr().err.split())
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(FileNotFoundError, match="run directory"):
        write_report(tmp_path / "nope")


def test_report_after_training(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.viz.report import report_after_training

    line = report_after_training(runs[AE])
    assert line is not None and line.startswith(f"report: {runs[AE] / 'report.html'} (")
    monkeypatch.setenv("RANK", "1")  # other DDP ranks write nothing
    assert report_after_training(tmp_path / "nope") is None
    monkeypatch.setenv("RANK", "0")
    line = report_after_training(tmp_path / "nope")  # a failure is a warning line, never an exception
    assert line is not None and line.startswith("warning: the HTML report was not written (FileNotFoundError")
    assert f"Retry with `cnnlab report {tmp_path / 'nope'}`" in line


def test_damaged_metrics_are_named_and_skips_are_printed(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    run = tmp_path / "badjson"
    shutil.copytree(runs[AE], run)
    (run / "metrics.json").write_text('{"test_acc')  # cut off mid-write
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out), "--max-images", "8"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    page = out.read_text()
    assert f"{run / 'metrics.json'} is damaged (not valid JSON" in _section(page, "summary")
    assert "no metrics.json" not in page  # it is there, just damaged
    assert "not shown: " in _section(page, "curves") and "is damaged" in _section(page, "curves")
    assert f"note: left out section 'Training curves': {run / 'metrics.json'} is damaged" in text
    (run / "metrics.json").write_text("[1, 2]")
    assert main(["report", str(run), "--out", str(out), "--max-images", "8"]) == 0
    assert "is damaged: it holds a JSON list instead of an object" in capsys.readouterr().out

    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["report", str(run), "--out", str(out), "--max-images", "8"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: left out")]
    # one line per reason: the sections that need the model share one
    assert any("sections (Architecture; Design lint;" in line and "could not be loaded" in line for line in lines)


def _recorded_run(tmp_path: Path, limit_test: int) -> Path:
    import json

    run = tmp_path / "recorded"
    run.mkdir()
    metrics = {"model": "fastnet", "task": "classification", "classes": ["a", "b"],
               "confusion_matrix": [[40, 10], [5, 45]], "config": {"limit_test": limit_test}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


@pytest.mark.parametrize(("limit", "wording"), [
    (100, "on the first 100 test images (training ran with limit_test=100; metrics.json)"),
    (0, "on the whole test split, 100 images (metrics.json)"),
])  # fmt: skip
def test_confusion_note_says_which_test_images(tmp_path: Path, limit: int, wording: str) -> None:
    page = write_report(_recorded_run(tmp_path, limit)).read_text()
    assert wording in _section(page, "confusion")


def test_report_reads_the_leaderboard_given_with_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.bench import Leaderboard

    monkeypatch.setenv("CNNLAB_LEADERBOARD", str(tmp_path / "default.sqlite"))
    run = _recorded_run(tmp_path, 0)
    db = tmp_path / "mine.sqlite"
    from cnnlab.bench.fingerprint import machine_fingerprint

    here = machine_fingerprint().machine  # rows of other machines are left out of the report
    row = {"model": "fastnet", "backend": "eager", "machine": here, "accuracy": 0.7531, "latency_median_ms": 1.5}
    Leaderboard(db).record(row)
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert "0.7531" not in out.read_text()  # the default database has no rows
    assert main(["report", str(run), "--out", str(out), "--db", str(db)]) == 0
    assert "0.7531" in _section(out.read_text(), "leaderboard")
    capsys.readouterr()
    assert main(["report", str(run), "--db", str(tmp_path / "typo.sqlite")]) == 2
    assert f"--db '{tmp_path / 'typo.sqlite'}': no leaderboard database at" in " ".join(capsys.readouterr().err.split())
    assert main(["report", str(run), "--db", str(tmp_path)]) == 2
    assert "is a folder; --db takes the path of a database file" in " ".join(capsys.readouterr().err.split())
