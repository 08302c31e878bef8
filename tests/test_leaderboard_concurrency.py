"""Four processes recording into one leaderboard at once lose nothing and corrupt nothing."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from cnnlab.bench import Leaderboard


def _record(db: str, worker: int, count: int, start: object) -> None:
    board = Leaderboard(db)
    start.wait()  # type: ignore[attr-defined]  # all workers begin together
    for i in range(count):
        board.record({
            "model": f"net{worker}", "dataset": "fashion-mnist", "backend": "eager", "accuracy": i / count,
            "latency_median_ms": 1.0 + i, "latency_n": i, "machine": "test-machine",
        })  # fmt: skip


def test_four_processes_record_fifty_rows_each(tmp_path):
    db = str(tmp_path / "lb.sqlite")
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_record, args=(db, w, 50, start)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    board = Leaderboard(db)
    rows = board.rows()
    assert len(rows) == 200
    assert len({r["id"] for r in rows}) == 200
    for w in range(4):
        assert sorted(r["latency_n"] for r in rows if r["model"] == f"net{w}") == list(range(50))
    assert board.integrity_check() == "ok"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
