"""The SQLite leaderboard: schema, round trip, Pareto front, machines never ranked together, CLI exports."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from cnnlab.bench import Leaderboard, default_db_path, pareto_front
from cnnlab.bench.fingerprint import machine_fingerprint
from cnnlab.bench.leaderboard import SCHEMA_VERSION
from cnnlab.cli.main import main


def _row(machine: str, backend: str, accuracy: float | None, latency: float, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "model": "fastnet", "dataset": "fashion-mnist", "backend": backend, "accuracy": accuracy,
        "latency_median_ms": latency, "latency_p90_ms": latency * 1.2, "latency_n": 100, "batch_size": 4,
        "throughput": 1000 / latency, "threads": 1, "params": 98_682, "macs": 2_584_064,
        "checkpoint_sha256": "ab" * 32, "machine": machine, "cpu_model": f"CPU {machine}", "cpu_count": 2,
        "gpu": "none",
    }  # fmt: skip
    row.update(extra)
    return row


def test_pareto_front_hand_made():
    rows = [
        {"accuracy": 0.92, "latency_median_ms": 1.0},  # front: most accurate
        {"accuracy": 0.92, "latency_median_ms": 1.5},  # same accuracy, slower: dominated
        {"accuracy": 0.90, "latency_median_ms": 0.3},  # front: faster, less accurate
        {"accuracy": 0.89, "latency_median_ms": 0.3},  # same speed, less accurate: dominated
        {"accuracy": 0.95, "latency_median_ms": 4.0},  # front: the best accuracy
        {"accuracy": 0.80, "latency_median_ms": 0.2},  # front: the fastest
        {"accuracy": 0.85, "latency_median_ms": 2.0},  # dominated by rows 0, 2
        {"accuracy": None, "latency_median_ms": 0.1},  # speed only: never on the front
    ]
    assert pareto_front(rows, group=()) == [True, False, True, False, True, True, False, False]


def test_pareto_front_duplicates_both_stay_on_the_front():
    rows = [{"accuracy": 0.9, "latency_median_ms": 1.0}, {"accuracy": 0.9, "latency_median_ms": 1.0}]
    assert pareto_front(rows, group=()) == [True, True]


def test_pareto_front_is_per_machine():
    fast_box = _row("m1", "ort", 0.90, 0.1)
    slow_box = _row("m2", "ort", 0.90, 5.0)
    # Alone per machine both are on their front; ranked together the slow machine's row would drop out.
    assert pareto_front([fast_box, slow_box]) == [True, True]
    assert pareto_front([fast_box, slow_box], group=()) == [True, False]


def test_round_trip_schema_and_wal(tmp_path):
    board = Leaderboard(tmp_path / "sub" / "lb.sqlite")
    assert board.rows() == [] and board.count() == 0  # no file yet: nothing, and nothing created
    assert not board.path.exists()
    ids = board.record_many([_row("m1", "eager", 0.9, 0.6, metrics={"loss": 0.3}), _row("m1", "ort", 0.9, 0.1)])
    assert ids == [1, 2]
    rows = board.rows(model="fastnet", dataset="fashion-mnist")
    assert [r["backend"] for r in rows] == ["eager", "ort"]
    assert rows[0]["metrics"] == {"loss": 0.3} and rows[0]["created_at"].endswith("+00:00")
    assert [r["backend"] for r in board.rows(sort="speed")] == ["ort", "eager"]
    assert board.rows(dataset="mnist") == []
    with sqlite3.connect(board.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert board.integrity_check() == "ok"


def test_record_rejects_unknown_and_missing_keys(tmp_path):
    board = Leaderboard(tmp_path / "lb.sqlite")
    with pytest.raises(ValueError, match=r"unknown keys \['latency'\]"):
        board.record({**_row("m", "eager", 0.9, 1.0), "latency": 3})
    with pytest.raises(ValueError, match=r"a row needs model, backend, machine; missing \['machine'\]"):
        board.record({"model": "x", "backend": "eager"})


def test_refuses_newer_schema_and_foreign_databases(tmp_path):
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ValueError, match="schema version 99, newer than this cnnlab"):
        Leaderboard(newer).record(_row("m", "eager", 0.9, 1.0))
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(ValueError, match="not a cnnlab leaderboard"):
        Leaderboard(foreign).record(_row("m", "eager", 0.9, 1.0))


def test_default_db_path_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNLAB_LEADERBOARD", raising=False)
    monkeypatch.setenv("CNNLAB_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "leaderboard.sqlite"
    monkeypatch.setenv("CNNLAB_LEADERBOARD", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("CNNLAB_LEADERBOARD")
    monkeypatch.delenv("CNNLAB_DATA_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "cnnlab" / "leaderboard.sqlite"


@pytest.fixture
def two_machines(tmp_path):
    here = machine_fingerprint().machine
    db = tmp_path / "lb.sqlite"
    Leaderboard(db).record_many([
        _row(here, "eager", 0.910, 0.60),
        _row(here, "ort", 0.910, 0.12),
        _row(here, "ort-int8", 0.905, 0.10),
        _row(here, "channels_last", 0.910, 0.40),
        _row("elsewhere99", "ort", 0.990, 0.01),  # a much faster machine: must not outrank ours silently
        _row("elsewhere99", "eager", 0.990, 0.05),
    ])  # fmt: skip
    return db, here


def test_cli_current_machine_hides_others_with_a_note(two_machines, capsys):
    db, here = two_machines
    assert main(["leaderboard", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"machine {here}" in out and "elsewhere99" not in out
    assert "2 rows from 1 other machine(s) hidden" in out
    table = [ln.split() for ln in out.splitlines() if "fastnet" in ln]
    # sorted by accuracy, then latency; * marks the front (ort, ort-int8); eager and channels_last are dominated
    ranked = [(cells[0], "*" in cells, next(c for c in cells if c in {"eager", "ort", "ort-int8", "channels_last"}))
              for cells in table]  # fmt: skip
    assert ranked == [("1", True, "ort"), ("2", False, "channels_last"), ("3", False, "eager"), ("4", True, "ort-int8")]


def test_cli_all_machines_are_separate_groups(two_machines, capsys):
    db, here = two_machines
    assert main(["leaderboard", "--db", str(db), "--machine", "all", "--format", "json", "--sort", "speed"]) == 0
    data = json.loads(capsys.readouterr().out)
    groups = {g["machine"]: g["rows"] for g in data["groups"]}
    assert set(groups) == {here, "elsewhere99"} and data["hidden_rows"] == 0
    assert [r["backend"] for r in groups[here]] == ["ort-int8", "ort", "channels_last", "eager"]
    assert [r["pareto"] for r in groups[here]] == [True, True, False, False]
    assert [r["rank"] for r in groups["elsewhere99"]] == [1, 2]  # ranks restart per machine


def test_cli_machine_prefix_csv_and_markdown(two_machines, capsys):
    db, _ = two_machines
    assert main(["leaderboard", "--db", str(db), "--machine", "elsewhere", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["backend"], r["pareto"], r["machine"]) for r in rows] == [("ort", "1", "elsewhere99"),
                                                                         ("eager", "0", "elsewhere99")]  # fmt: skip
    assert main(["leaderboard", "--db", str(db), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "| # | front | model |" in md and "| 1 | * | fastnet | fashion-mnist | ort |" in md


def test_cli_errors(two_machines, tmp_path, capsys):
    db, _ = two_machines
    assert main(["leaderboard", "--db", str(db), "--machine", "nosuch"]) == 2
    assert "--machine 'nosuch' matches no rows" in capsys.readouterr().err
    # An explicit --db that does not exist, or is a folder, used to show "no leaderboard rows" (rc 0).
    assert main(["leaderboard", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no leaderboard database at" in capsys.readouterr().err
    assert main(["leaderboard", "--db", str(tmp_path)]) == 2
    assert "is a folder; --db takes the path of a database file" in " ".join(capsys.readouterr().err.split())
    # A filter that matches nothing names itself and the values recorded (it looked like an empty database).
    assert main(["leaderboard", "--db", str(db), "--model", "fastnett"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--model 'fastnett' matches no leaderboard row; the rows recorded have model fastnet" in err
    assert main(["leaderboard", "--db", str(db), "--dataset", "cifar10"]) == 2
    assert "--dataset 'cifar10' matches no leaderboard row" in capsys.readouterr().err


def test_cli_default_database_missing_is_an_empty_board(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_LEADERBOARD", str(tmp_path / "fresh.sqlite"))
    assert main(["leaderboard"]) == 0
    assert "no leaderboard rows" in capsys.readouterr().out
