"""bench and the leaderboard name each task's own score: pixel accuracy and mean IoU for segmentation, MSE
for reconstruction (lower is better, no accuracy); the leaderboard shows each task as its own table.

Before: a segmentation run's column read 'accuracy' (it held pixel accuracy), an autoencoder's read '-' with
its 'vs eager' '-' too, and `cnnlab leaderboard` sorted segmentation pixel accuracies among classification
accuracies in one 'accuracy' column, with reconstruction rows at the bottom showing '-' and no MSE.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from cnnlab.bench import Leaderboard
from cnnlab.bench.fingerprint import machine_fingerprint
from cnnlab.bench.leaderboard import COLUMNS, row_task
from cnnlab.cli.cmd_bench import _no_negative_zero
from cnnlab.cli.main import main
from cnnlab.models import create_model
from cnnlab.train.checkpoint import save_model

QUICK = ["--repeats", "2", "--warmup", "0", "--throughput-batch", "8", "--throughput-seconds", "0"]
SEG_OPTS = {"n": 24, "size": 32}


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    # segnet: MaxPool indices -> MaxUnpool, which the ONNX path must carry
    path = tmp_path_factory.mktemp("seg")
    meta = {
        "model": "segnet", "model_kwargs": {"widths": [4, 8]}, "num_classes": 4, "in_chans": 1,
        "input_size": [1, 32, 32], "normalization": {"mean": [0.26], "std": [0.25]}, "dataset": "shapes",
        "task": "segmentation", "config": {"data_opts": SEG_OPTS},
    }  # fmt: skip
    save_model(create_model("segnet", widths=(4, 8), num_classes=4).eval(), meta, path)
    (path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "test_mean_iou": 0.25}))
    return path


def _table(out: str) -> dict[str, list[str]]:
    lines = [ln.split() for ln in out.splitlines()]
    header = next(cells for cells in lines if cells[:1] == ["backend"])
    return {"header": header, **{cells[0]: cells for cells in lines if cells[:1] in (["eager"], ["ort"])}}


def test_segmentation_bench_labels_pixel_accuracy_and_mean_iou(seg_run, tmp_path, capsys):
    db = tmp_path / "lb.sqlite"
    assert main(["bench", str(seg_run), "--backend", "eager,ort", "--record", "--db", str(db), *QUICK]) == 0
    out = capsys.readouterr().out
    table = _table(out)
    assert table["header"][:6] == ["backend", "pixel", "acc", "mean", "IoU", "vs"]
    assert "accuracy" not in table["header"]
    assert table["eager"][1:3] == table["ort"][1:3]  # ORT through MaxUnpool scores like eager
    flat = " ".join(out.split())
    assert "(vs eager = the backend's pixel accuracy minus that of eager;" in flat
    assert "cnnlab train recorded test pixel accuracy 0.5000, mean IoU 0.2500 on the test split" in flat
    rows = Leaderboard(db).rows()
    assert [r["task"] for r in rows] == ["segmentation", "segmentation"]
    assert all(r["metrics"]["pixel_accuracy"] == r["accuracy"] for r in rows)


def test_reconstruction_bench_compares_mse_and_says_what_training_recorded(tmp_path, capsys):
    meta = {
        "model": "conv_autoencoder", "model_kwargs": {"widths": [4, 8], "code_channels": 2}, "num_classes": 1,
        "in_chans": 1, "input_size": [1, 28, 28], "normalization": {"mean": [0.286], "std": [0.353]},
        "dataset": "fashion-mnist", "task": "reconstruction",
    }  # fmt: skip
    save_model(create_model("conv_autoencoder", widths=(4, 8), code_channels=2).eval(), meta, tmp_path / "ae")
    (tmp_path / "ae" / "metrics.json").write_text(json.dumps({"test_accuracy": None, "test_mse": 1.5}))
    assert main(["bench", str(tmp_path / "ae"), "--backend", "eager,channels_last", *QUICK]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith(("eager", "channels_last"))}
    assert lines["eager"][2] == "+0.000000" and lines["channels_last"][2].startswith(("+", "-"))  # an MSE delta
    flat = " ".join(out.split())
    assert "a reconstruction has no accuracy" in flat and "lower is better" in flat
    assert "cnnlab train recorded test MSE 1.500000 on the test split for this run" in flat


def test_a_difference_that_rounds_to_zero_has_no_minus_sign():
    # bf16 beside eager printed '-0.0000'
    assert format(_no_negative_zero(-3e-6, ".4f"), "+.4f") == "+0.0000"
    assert format(_no_negative_zero(-3e-4, ".4f"), "+.4f") == "-0.0003"


def _row(task: str | None, model: str, score: float, latency: float) -> dict[str, object]:
    metrics = {"segmentation": {"mean_iou": score / 3, "pixel_accuracy": score}, "reconstruction": {"mse": score}}
    return {
        "model": model, "dataset": "shapes" if task == "segmentation" else "fashion-mnist", "task": task,
        "backend": "ort", "accuracy": None if task == "reconstruction" else score, "metrics": metrics.get(task or ""),
        "latency_median_ms": latency, "batch_size": 4, "machine": machine_fingerprint().machine,
        "data_sha256": f"{task}", "input_size": "1x28x28",
    }  # fmt: skip


@pytest.fixture
def mixed_board(tmp_path):
    db = tmp_path / "lb.sqlite"
    Leaderboard(db).record_many([
        _row("classification", "fastnet", 0.91, 0.5),
        _row("segmentation", "segnet", 0.95, 2.0),  # a pixel accuracy: must not rank above fastnet's accuracy
        _row("segmentation", "unet", 0.90, 1.0),
        _row("reconstruction", "ae_big", 0.20, 0.9),  # best MSE
        _row("reconstruction", "ae_small", 0.40, 0.3),  # worse MSE, faster: on the front too
        _row("reconstruction", "ae_slow", 0.50, 0.8),  # worse and slower than ae_small: dominated
    ])  # fmt: skip
    return db


def test_leaderboard_shows_each_task_as_its_own_table_with_its_score(mixed_board, capsys):
    assert main(["leaderboard", "--db", str(mixed_board)]) == 0
    out = capsys.readouterr().out
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    assert [b[0].split("; ")[1].split(":")[0] for b in blocks] == ["classification", "segmentation", "reconstruction"]
    headers = [b[1].split() for b in blocks]
    assert headers[0][5] == "accuracy" and headers[1][5:9] == ["pixel", "acc", "mean", "IoU"]
    assert headers[2][5] == "MSE" and "accuracy" not in headers[2]
    ranked = [(cells[0], cells[1] == "*", cells[2 if cells[1] == "*" else 1]) for cells in
              (ln.split() for ln in blocks[2][2:])]  # fmt: skip
    assert ranked == [("1", True, "ae_big"), ("2", True, "ae_small"), ("3", False, "ae_slow")]  # lowest MSE first
    assert "0.200000" in blocks[2][2] and "0.3167" in blocks[1][2]  # the MSE and segnet's mean IoU are shown


def test_leaderboard_json_names_the_task_of_each_group(mixed_board, capsys):
    assert main(["leaderboard", "--db", str(mixed_board), "--format", "json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [(g["task"], [r["model"] for r in g["rows"]]) for g in groups] == [
        ("classification", ["fastnet"]), ("segmentation", ["segnet", "unet"]),
        ("reconstruction", ["ae_big", "ae_small", "ae_slow"]),
    ]  # fmt: skip
    assert [r["pareto"] for r in groups[2]["rows"]] == [True, True, False]
    assert "lower is better" in groups[2]["score"]


def test_a_version_2_file_gains_the_task_column_and_old_rows_are_read_by_their_metrics(tmp_path):
    db = tmp_path / "v2.sqlite"
    columns = ", ".join(f"{name} {sql}" for name, sql, _ in COLUMNS if name not in ("task", "init_from_sha256"))
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE results ({columns})")
        for model, acc, metrics in (("segnet", 0.8, '{"mean_iou": 0.3}'), ("ae", None, '{"mse": 0.1}'),
                                    ("fastnet", 0.9, None), ("lenet5", None, None)):  # fmt: skip
            conn.execute(
                "INSERT INTO results (model, backend, accuracy, metrics, machine, created_at) "
                "VALUES (?, 'ort', ?, ?, 'm1', '2025-01-01T00:00:00+00:00')",
                (model, acc, metrics),
            )
        conn.execute("PRAGMA user_version = 2")
    rows = Leaderboard(db).rows()
    assert [r["task"] for r in rows] == [None] * 4
    assert [row_task(r) for r in rows] == ["segmentation", "reconstruction", "classification", None]
