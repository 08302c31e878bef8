"""Every leaderboard row says what was measured: which test data (count and sha256) and which input size.

Before: a row held only the dataset's name, so a fashion-mnist checkpoint scored through --data-dir on
200 other images was recorded as 'fastnet fashion-mnist 0.11' beside full-split rows and ranked with them,
and an untrained model timed at --input 3,224,224 could not be told from one timed at its own size.
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from _idx_files import write_striped_mnist
from cnnlab.bench import Leaderboard, pareto_front
from cnnlab.bench.leaderboard import COLUMNS, SCHEMA_VERSION
from cnnlab.cli.main import main
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.train.checkpoint import save_model

QUICK = ["--backend", "eager", "--repeats", "2", "--warmup", "0", "--throughput-batch", "8",
         "--throughput-seconds", "0", "--format", "json"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    meta = {
        "model": "fastnet", "model_kwargs": {"widths": [4, 8, 8, 16]}, "num_classes": 10, "in_chans": 1,
        "input_size": [1, 28, 28], "normalization": {"mean": [0.286], "std": [0.353]},
        "dataset": "fashion-mnist", "task": "classification",
    }  # fmt: skip
    save_model(create_model("fastnet", widths=(4, 8, 8, 16)).eval(), meta, path)
    return path


def _bench(capsys, *argv: str) -> dict:
    assert main(["bench", *argv, *QUICK]) == 0
    return json.loads(capsys.readouterr().out)


def test_rows_name_the_test_data_that_gave_the_accuracy(run_dir, tmp_path, capsys):
    db = str(tmp_path / "lb.sqlite")
    other = write_striped_mnist(tmp_path / "other", n_train=40, n_test=50)  # same file names, other images
    first = _bench(capsys, str(run_dir), "--record", "--db", db)
    again = _bench(capsys, str(run_dir), "--record", "--db", db)
    moved = _bench(capsys, str(run_dir), "--record", "--db", db, "--data-dir", str(other))
    rows = Leaderboard(db).rows()
    assert [r["test_images"] for r in rows] == [len(load_dataset("fashion-mnist", "test")), 10000, 50]
    assert [r["input_size"] for r in rows] == ["1x28x28"] * 3
    assert rows[0]["data_sha256"] == rows[1]["data_sha256"] == first["data_sha256"] == again["data_sha256"]
    assert rows[2]["data_sha256"] == moved["data_sha256"] != rows[0]["data_sha256"]
    assert rows[0]["accuracy"] == rows[1]["accuracy"]  # the same checkpoint on the same data, benched twice
    assert main(["leaderboard", "--db", db]) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("#"))
    assert "test imgs" in header and "data sha256" in header and "input" in header
    lines = [line for line in table if "fastnet" in line]
    assert sum(" 10,000 " in line for line in lines) == 2 and sum(" 50 " in line for line in lines) == 1
    assert all(rows[2]["data_sha256"][:12] in line for line in lines if " 50 " in line)


def test_pareto_front_never_ranks_rows_of_other_test_data_or_input_size_together():
    base = {"machine": "m", "dataset": "fashion-mnist", "batch_size": 4, "input_size": "1x28x28"}
    full = {**base, "data_sha256": "aa", "accuracy": 0.90, "latency_median_ms": 1.0}
    other_data = {**base, "data_sha256": "bb", "accuracy": 0.95, "latency_median_ms": 0.5}
    other_size = {**full, "input_size": "1x32x32", "accuracy": 0.95, "latency_median_ms": 0.5}
    assert pareto_front([full, other_data]) == [True, True]
    assert pareto_front([full, other_size]) == [True, True]
    assert pareto_front([full, {**other_data, "data_sha256": "aa"}]) == [False, True]


def test_untrained_rows_record_their_input_size_and_are_labelled(tmp_path, capsys):
    db = str(tmp_path / "lb.sqlite")
    own = _bench(capsys, "lenet5", "--record", "--db", db)
    other = _bench(capsys, "lenet5", "--input", "1,33,33", "--record", "--db", db)  # floors keep c5 at 1x1
    assert own["input_size"] == [1, 32, 32] and other["input_size"] == [1, 33, 33]
    rows = Leaderboard(db).rows()
    assert [r["input_size"] for r in rows] == ["1x32x32", "1x33x33"]
    assert all(r["test_images"] is None and r["data_sha256"] is None and r["accuracy"] is None for r in rows)
    assert main(["leaderboard", "--db", db]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if "lenet5" in line]
    assert len(lines) == 2 and all("(untrained)" in cells for cells in lines)
    assert {cells[-6] for cells in lines} == {"1x32x32", "1x33x33"}  # then test imgs, 3 sha256s, recorded


def test_a_version_1_file_is_migrated_and_keeps_its_rows(tmp_path):
    db = tmp_path / "v1.sqlite"
    added = {"test_images", "data_sha256", "input_size", "task", "init_from_sha256"}  # added by schemas 2, 3, 4
    columns = ", ".join(f"{name} {sql}" for name, sql, _ in COLUMNS if name not in added)
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE results ({columns})")
        conn.execute("INSERT INTO results (model, backend, accuracy, machine, created_at) "
                     "VALUES ('fastnet', 'ort', 0.91, 'm1', '2025-01-01T00:00:00+00:00')")  # fmt: skip
        conn.execute("PRAGMA user_version = 1")
    board = Leaderboard(db)
    old = board.rows()
    assert len(old) == 1 and old[0]["accuracy"] == 0.91 and old[0]["test_images"] is None
    board.record({"model": "fastnet", "backend": "eager", "machine": "m1", "test_images": 10, "input_size": "1x2x2"})
    assert [(r["backend"], r["test_images"]) for r in board.rows()] == [("ort", None), ("eager", 10)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


@pytest.mark.parametrize(
    ("size", "reason"),
    [("1,64,64", r"mat1 and mat2 shapes cannot be multiplied"), ("3,32,32", r"to have 1 channels, but got 3")],
)
def test_an_input_size_the_model_cannot_take_is_one_paragraph(tmp_path, capsys, size, reason):
    # was a raw RuntimeError traceback from the first backend's accuracy-free timing pass
    db = tmp_path / "lb.sqlite"
    assert main(["bench", "lenet5", "--input", size, "--record", "--db", str(db), *QUICK]) == 2
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert captured.out == "" and "Traceback" not in err and "measuring" not in err
    assert re.search(rf"^error: --input {size}: model 'lenet5' cannot run on {size.replace(',', 'x')} inputs", err)
    assert re.search(reason, err) and "Its design input size is 1,32,32" in err and not db.exists()


def test_a_checkpoint_whose_dataset_is_missing_says_where_the_name_came_from(tmp_path, capsys):
    # was only "Image folder ... does not exist": the user had named a run, not that folder
    meta = {"model": "fastnet", "model_kwargs": {"widths": [4, 8, 8, 16]}, "num_classes": 10, "in_chans": 1,
            "input_size": [1, 28, 28], "normalization": {"mean": [0.5], "std": [0.25]},
            "dataset": f"folder:{tmp_path / 'moved'}", "task": "classification"}  # fmt: skip
    save_model(create_model("fastnet", widths=(4, 8, 8, 16)).eval(), meta, tmp_path / "run")
    assert main(["bench", str(tmp_path / "run"), *QUICK]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith(f"error: TARGET {tmp_path / 'run' / 'model.safetensors'}: bench scores a checkpoint")
    assert f"'folder:{tmp_path / 'moved'}' (recorded in its model.json)" in err and "does not exist" in err


def test_fine_tuned_rows_name_the_weights_they_started_from(run_dir, tmp_path, capsys):
    """A run trained with --init-from is not a from-scratch result: its rows carry the source's sha256."""
    source_sha = json.loads((run_dir / "model.json").read_text())["sha256"]
    meta = json.loads((run_dir / "model.json").read_text())
    model = create_model("fastnet", widths=(4, 8, 8, 16)).eval()
    recorded, path_only, gone = tmp_path / "recorded", tmp_path / "path-only", tmp_path / "gone"
    base = {k: v for k, v in meta.items() if k not in ("sha256", "bytes")}
    save_model(model, {**base, "init_from": str(run_dir), "init_from_sha256": source_sha}, recorded)
    save_model(model, {**base, "init_from": str(run_dir)}, path_only)  # a run from before the sha was recorded
    save_model(model, {**base, "init_from": str(tmp_path / "deleted-source")}, gone)
    db = str(tmp_path / "lb.sqlite")
    for run in (run_dir, recorded, path_only, gone):
        assert _bench(capsys, str(run), "--record", "--db", db)["init_from_sha256"] == (
            None if run == run_dir else "unknown" if run == gone else source_sha
        )
    assert [r["init_from_sha256"] for r in Leaderboard(db).rows(sort="speed")].count(source_sha) == 2
    assert main(["bench", str(gone), *QUICK[:-2]]) == 0  # text: the header says where the weights came from
    assert "fine-tuned from unknown) on the fashion-mnist test split" in capsys.readouterr().out
    assert main(["leaderboard", "--db", db]) == 0
    table = capsys.readouterr().out
    # the source's sha256: once as its own row's checkpoint, twice as the start of a fine-tuned one
    assert "fine-tuned from" in table and table.count(source_sha[:12]) == 3 and "unknown" in table

