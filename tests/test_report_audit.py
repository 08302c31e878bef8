"""What the report says about a run: the meaning of each number, an unfinished run, the leaderboard rows
that compare with it, and which files it refuses to overwrite.

The runs are hand-written run directories (metrics.json, metrics.jsonl) except the leaderboard test, which
trains a tiny segmentation model on 48 generated ``shapes`` images so the report can hash its test split.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnlab.cli.main import main
from cnnlab.viz.report import write_report

SEG = "viz_test_audit_seg"


def _section(page: str, key: str) -> str:
    """The section's HTML, entities decoded and white space collapsed."""
    return " ".join(html.unescape(page.split(f'<section id="{key}">')[1].split("</section>")[0]).split())


def _history(epochs: int) -> list[dict[str, float]]:
    return [
        {"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "val_accuracy": 0.5 + e / 100}
        for e in range(1, epochs + 1)
    ]


def _finished_run(tmp_path: Path, **config: object) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    metrics = {
        "model": "fastnet", "dataset": "fashion-mnist", "task": "classification", "test_accuracy": 0.9,
        "test_loss": 0.3, "val_accuracy": 0.88, "epochs": 3, "weights": "ema", "precision": "bf16",
        "classes": ["a", "b"], "confusion_matrix": [[45, 5], [5, 45]], "history": _history(3),
        "config": {"limit_test": 100, "tta_flip": True, "val_fraction": 0.1, "epochs": 3, **config},
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def _rows(page: str) -> dict[str, str]:
    """field -> 'value | what it is' of the summary table."""
    import re

    cells = re.findall(r"<tr><td class=l>([^<]*)</td><td class=l>([^<]*)</td><td class=l>([^<]*)</td></tr>", page)
    return {k: f"{v} | {what}" for k, v, what in cells}


def test_summary_says_what_each_number_measures(tmp_path: Path) -> None:
    rows = _rows(_section(write_report(_finished_run(tmp_path)).read_text(), "summary"))
    assert rows["test_accuracy"] == (
        "0.9000 | test accuracy (share of images classified correctly) on the first 100 test images "
        "(limit_test=100), EMA weights (moving average of the trained weights), each image averaged with its "
        "mirror (flip TTA), in bf16; scored once after the last epoch (3)"
    )
    assert rows["val_accuracy"].startswith("0.8800 | validation accuracy (10% of the training images, held out)")
    assert "not the test split" in rows["val_accuracy"]
    assert rows["test_loss"].endswith("same images and weights as test_accuracy")


def test_summary_without_tta_and_ema_says_so(tmp_path: Path) -> None:
    run = _finished_run(tmp_path, tta_flip=False, limit_test=0, init_from="runs/base")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "weights": "raw"}))
    rows = _rows(_section(write_report(run).read_text(), "summary"))
    assert (
        "on the whole test split (100 images), the trained weights (no EMA), one pass per image (no TTA)"
        in (rows["test_accuracy"])
    )
    assert rows["init_from"].startswith("runs/base | the run whose weights training started from")
    assert rows["epochs"] == "3 | epochs trained in this run (after --init-from)"


def test_unfinished_run_shows_its_epochs_and_how_to_finish(tmp_path: Path) -> None:
    run = tmp_path / "cut short"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _history(2)))
    (run / "config.json").write_text(json.dumps({"epochs": 5}))
    (run / "train_state.safetensors").write_bytes(b"x")
    page = write_report(run).read_text()
    summary, curves = _section(page, "summary"), _section(page, "curves")
    assert "no history to plot" not in page
    assert f"training has not finished: {run} has no metrics.json" in summary
    assert f"Finish it with `cnnlab train --resume --out '{run}'`" in summary  # quoted: the name has a space
    assert 'alt="training curves"' in curves and f"from {run / 'metrics.jsonl'}" in curves

    (run / "metrics.jsonl").write_text(json.dumps(_history(1)[0]) + '\n{"epoch": 2, "tr')  # cut mid-write
    curves = _section(write_report(run).read_text(), "curves")
    assert 'alt="training curves"' in curves and "is damaged at line 2" in curves
    (run / "metrics.jsonl").unlink()
    curves = _section(write_report(run).read_text(), "curves")
    assert "has neither metrics.json nor a metrics.jsonl with a finished epoch" in curves


def test_history_that_is_not_a_list_is_named(tmp_path: Path) -> None:
    run = _finished_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "history": "epoch 1 loss 2"}))
    curves = _section(write_report(run).read_text(), "curves")
    assert "'history' is not a list of per-epoch records; received str" in curves
    assert "could not draw" not in curves


def test_comparable_rows_keep_only_this_machine_input_and_data() -> None:
    from cnnlab.viz.report import comparable_rows

    rows = [
        {"id": 1, "machine": "m", "input_size": "1x28x28", "data_sha256": "d"},
        {"id": 2, "machine": "other", "input_size": "1x28x28", "data_sha256": "d"},
        {"id": 3, "machine": "m", "input_size": "1x56x56", "data_sha256": "d"},
        {"id": 4, "machine": "m", "input_size": "1x28x28", "data_sha256": "e"},
        {"id": 5, "machine": "m", "input_size": None, "data_sha256": None},
    ]
    shown, left_out = comparable_rows(rows, "m", "1x28x28", "d")
    assert [r["id"] for r in shown] == [1]
    assert {reason: [r["id"] for r in v] for reason, v in left_out.items()} == {
        "from another machine": [2],
        "at another input size than 1x28x28": [3],
        "measured on other test data (another data sha256)": [4],
        "with no record of their test data (recorded before leaderboard schema 2)": [5],
    }
    shown, left_out = comparable_rows(rows, "m", "1x28x28", None)  # test data unknown here: not checked
    assert [r["id"] for r in shown] == [1, 4, 5]


def _seg(num_classes: int = 4, in_chans: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, num_classes, 1))


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from cnnlab.models import _registry
    from cnnlab.train.loop import fit
    from cnnlab.train.recipes import resolve_recipe

    _registry.register_model(SEG, family="test", input_size=(1, 32, 32), num_classes=4, task="segmentation")(_seg)
    try:
        cfg = resolve_recipe(
            "segmentation", {"model": SEG, "epochs": 1, "data_opts": {"n": 48, "size": 32}, "progress": "none"}
        )
        yield fit(cfg, tmp_path_factory.mktemp("seg") / "my run").run_dir  # registered while the report loads it
    finally:
        _registry._REGISTRY.pop(SEG, None)


def test_leaderboard_section_compares_like_with_like(seg_run: Path, tmp_path: Path) -> None:
    from cnnlab.bench import Leaderboard
    from cnnlab.bench.fingerprint import machine_fingerprint
    from cnnlab.bench.runner import data_sha256
    from cnnlab.data import load_dataset

    test = load_dataset("shapes", "test", None, n=48, size=32)
    assert test.masks is not None
    digest, here = data_sha256(test.images, test.masks), machine_fingerprint().machine
    base = {"model": SEG, "dataset": "shapes", "backend": "eager", "machine": here, "input_size": "1x32x32",
            "data_sha256": digest, "test_images": len(test), "latency_median_ms": 1.0}  # fmt: skip
    db = tmp_path / "lb.sqlite"
    Leaderboard(db).record_many([
        {**base, "accuracy": 0.6111, "metrics": {"mean_iou": 0.4321}, "init_from_sha256": "abcdef012345" * 5},
        {**base, "accuracy": 0.6222, "machine": "0123456789ab", "cpu_model": "elsewhere"},
        {**base, "accuracy": 0.6333, "data_sha256": "0" * 64, "test_images": 7},
        {**base, "accuracy": 0.6444, "data_sha256": None, "test_images": None},
    ])  # fmt: skip
    section = _section(write_report(seg_run, leaderboard_db=db, max_images=8).read_text(), "leaderboard")
    assert "0.6111" in section and not any(a in section for a in ("0.6222", "0.6333", "0.6444"))
    assert f"measured on this machine ({here}:" in section
    assert f"on this run's test split ({len(test)} images, data sha256 {digest[:12]})" in section
    assert "left out 3 rows that do not compare with these: 1 from another machine; 1 measured on other" in section
    assert f"--machine all --db {db}` lists them" in section
    assert "None" not in section  # an empty cell is '-'
    # a segmentation run's rows show its task's scores (the column read 'accuracy' of pixel accuracy)
    assert "<th>pixel acc</th><th>mean IoU</th>" in section and "0.4321" in section and ">accuracy<" not in section
    assert "best pixel acc first" in section
    assert "<th>fine-tuned from</th>" in section and "<td>abcdef012345</td>" in section  # the source's sha256

    empty = tmp_path / "empty.sqlite"
    Leaderboard(empty).record({**base, "machine": "0123456789ab"})
    section = _section(write_report(seg_run, leaderboard_db=empty, max_images=8).read_text(), "leaderboard")
    assert "no leaderboard row for model" in section and "compares with this run" in section
    assert f"`cnnlab bench '{seg_run}' --record --db {empty}`" in section  # a copyable command


def test_out_that_is_not_a_report_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _finished_run(tmp_path)
    mine = tmp_path / "notes.html"
    mine.write_text("<html><body>my notes</body></html>")
    assert main(["report", str(run), "--out", str(mine)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--out '{mine}' already exists and is not a cnnlab report" in err
    assert f"so it is not overwritten. Choose another file, e.g. --out {tmp_path / 'notes-report.html'}" in err
    assert mine.read_text() == "<html><body>my notes</body></html>"

    (run / "report.html").write_text("my own page")  # the default output is protected too
    assert main(["report", str(run)]) == 2
    assert f"the default output '{run / 'report.html'}' (no --out given) already exists" in " ".join(
        capsys.readouterr().err.split()
    )
    with pytest.raises(ValueError, match="already exists and is not a cnnlab report"):
        write_report(run)
    assert (run / "report.html").read_text() == "my own page"

    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0 and main(["report", str(run)]) == 0  # a report is replaced
    old_style = (run / "report.html").read_text().replace("<meta name=generator content=cnnlab-report>", "")
    (run / "report.html").write_text(old_style)  # a report written before the generator tag
    assert main(["report", str(run)]) == 0


def test_run_dir_errors_name_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _finished_run(tmp_path)
    assert main(["report", str(run / "metrics.json")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"RUN_DIR '{run / 'metrics.json'}' is a file" in err
    assert f"pass the folder that holds it: `cnnlab report {run}`" in err
    assert "default output" not in err
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"RUN_DIR '{tmp_path / 'nope'}' does not exist; RUN_DIR is the folder a `cnnlab train` run wrote" in err


def test_class_names_are_text_and_predictions_are_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnlab.viz.curves as curves

    figures: list[object] = []
    real = curves.figure_array
    monkeypatch.setattr(curves, "figure_array", lambda fig: figures.append(fig) or real(fig))
    classes = [r"cost $\frac$ x", "a very long class name here", "b"]  # "$\frac$" is bad TeX: it raised
    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    curves.misclassified_figure(images, torch.tensor([1, 0]), torch.tensor([2, 1]), classes)
    titles = [ax.get_title() for ax in figures[-1].axes if ax.get_title()]  # type: ignore[attr-defined]
    assert titles == ["a very long… -> b", "cost $\\frac… -> a very long…"]
    curves.confusion_figure(torch.eye(3, dtype=torch.int64), classes)
    curves.curves_figure(_history(3))
    ticks = figures[-1].axes[0].get_xticks()  # type: ignore[attr-defined]
    assert all(float(t).is_integer() for t in ticks)  # whole epochs: no tick at 1.5
