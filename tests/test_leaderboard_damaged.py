"""A damaged leaderboard file is refused in one paragraph, before any measurement, and never written to."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cnnlab.bench import Leaderboard
from cnnlab.bench.fingerprint import machine_fingerprint
from cnnlab.cli.main import main

QUICK = ["--backend", "eager", "--repeats", "2", "--warmup", "0", "--throughput-batch", "4",
         "--throughput-seconds", "0"]  # fmt: skip


def _row(backend: str) -> dict[str, object]:
    return {"model": "fastnet", "dataset": "fashion-mnist", "backend": backend, "accuracy": 0.9,
            "latency_median_ms": 1.0, "batch_size": 4, "machine": machine_fingerprint().machine}  # fmt: skip


def _damaged_board(tmp_path: Path, page: str) -> Path:
    """A real leaderboard with one b-tree page overwritten: the header and schema still read fine."""
    db = tmp_path / "lb.sqlite"
    Leaderboard(db).record_many([_row(b) for b in ("eager", "ort", "channels_last")])
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file
        rootpage = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (page,)).fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    start = (rootpage - 1) * page_size
    data[start + 8 : start + page_size - 8] = b"\xff" * (page_size - 16)  # cell pointers past the page's end
    db.write_bytes(bytes(data))
    return db


@pytest.mark.parametrize("page", ["results", "results_model"])
def test_leaderboard_command_names_a_damaged_file(tmp_path, capsys, page):
    # results page: a raw sqlite3.DatabaseError traceback; index page: rows shown as if the file were sound
    db = _damaged_board(tmp_path, page)
    assert main(["leaderboard", "--db", str(db)]) == 2
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert captured.out == "" and "Traceback" not in err
    assert f"leaderboard database {str(db)!r} is damaged" in err and "quick_check" in err
    assert ".recover" in err and "--db PATH" in err


@pytest.mark.parametrize("page", ["results", "results_machine_dataset"])
def test_bench_record_refuses_a_damaged_file_before_measuring_and_leaves_it_alone(tmp_path, capsys, page):
    # results page: bench said "recorded 1 rows" into a table whose rows were lost; index page: a raw
    # traceback after the whole measurement
    db = _damaged_board(tmp_path, page)
    before = db.read_bytes()
    assert main(["bench", "fastnet", "--record", "--db", str(db), *QUICK]) == 2
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "measuring" not in err and "Traceback" not in err and captured.out == ""
    assert f"leaderboard database {str(db)!r} is damaged" in err and "nothing was written" in err
    assert db.read_bytes() == before


def test_report_with_a_damaged_db_fails_before_the_work(tmp_path, capsys):
    # the report used to be written with the section left out and a bare "DatabaseError" note
    db = _damaged_board(tmp_path, "results")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    assert main(["report", str(run), "--db", str(db)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: --db") and "is damaged" in err
    assert not (run / "report.html").exists()


def test_a_sound_file_still_reads_and_records(tmp_path):
    board = Leaderboard(tmp_path / "lb.sqlite")
    board.record(_row("eager"))
    board.open_for_writing()
    assert [r["backend"] for r in board.rows()] == ["eager"] and board.count() == 1
