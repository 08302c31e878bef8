"""The report's leaderboard section: the `cnnlab bench` rows that compare with the run (same machine, input
size and test data), and why the others are left out. Used by :mod:`cnnlab.viz.report`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import Any

from cnnlab.bench.leaderboard import TASK_SCORES, Leaderboard, row_value
from cnnlab.viz.report_html import note, table
from cnnlab.viz.run_data import RunContext

__all__ = ["comparable_rows", "leaderboard_rows", "leaderboard_section"]


_NO_ROWS = "no leaderboard rows yet: run cnnlab bench RUN --record"
# (header, row key, format): what a reader compares; the machine is said once, under the table
# the task's score columns (cnnlab.bench.leaderboard.TASK_SCORES) follow the backend
_BOARD_COLUMNS = (
    ("backend", "backend", "s"), ("test imgs", "test_images", ",d"),
    ("input", "input_size", "s"), ("median ms", "latency_median_ms", ".3f"), ("p90 ms", "latency_p90_ms", ".3f"),
    ("batch", "batch_size", "d"), ("img/s", "throughput", ",.0f"), ("threads", "threads", "d"),
    ("params", "params", ",d"), ("MACs", "macs", ",d"), ("weights sha256", "checkpoint_sha256", "sha"),
    ("fine-tuned from", "init_from_sha256", "sha"), ("recorded", "created_at", "s"),
)  # fmt: skip


def _cell(value: object, spec: str) -> str:
    if value is None or value == "":
        return "-"
    if spec == "sha":
        return str(value)[:12]
    return str(value) if spec == "s" else format(value, spec)


def leaderboard_section(ctx: RunContext) -> str:
    from cnnlab.bench.fingerprint import machine_fingerprint

    model = ctx.metrics.get("model") or ctx.meta.get("model")
    dataset = ctx.metrics.get("dataset") or ctx.meta.get("dataset")
    rows = leaderboard_rows(model, dataset, ctx.leaderboard_db)
    db = f" --db {shlex.quote(str(ctx.leaderboard_db))}" if ctx.leaderboard_db is not None else ""
    if not rows:
        bench = _NO_ROWS.replace("RUN", shlex.quote(str(ctx.run_dir)))
        return note(f"{bench}{db} (none for model {model!r} on {dataset!r}).")
    here = machine_fingerprint()
    size = "x".join(str(v) for v in ctx.meta.get("input_size") or ()) or None
    shown, left_out = comparable_rows(rows, here.machine, size, ctx.test_data_sha256)
    task = str(ctx.metrics.get("task") or ctx.meta.get("task") or "classification")
    scores, meaning, lower_better = TASK_SCORES.get(task, TASK_SCORES["classification"])
    columns = [_BOARD_COLUMNS[0], *scores, *_BOARD_COLUMNS[1:]]
    (first, key, _), *_ = scores

    def rank(r: dict[str, Any]) -> tuple[bool, float, float]:  # best score first, then the fastest
        value = row_value(r, key)
        best = float(value) if lower_better else -float(value or 0.0)
        return value is None, best if value is not None else 0.0, r.get("latency_median_ms") or 0.0

    shown.sort(key=rank)
    sha = ctx.meta.get("sha256")
    body = [
        ["this run" if sha and r.get("checkpoint_sha256") == sha else "",
         *(_cell(row_value(r, k), f) for _, k, f in columns)]
        for r in shown[:20]
    ]  # fmt: skip
    gpu = "no GPU" if here.gpu in (None, "none") else f"GPU {here.gpu}"
    data = (
        f"this run's test split ({ctx.test_images:,} images, data sha256 {ctx.test_data_sha256[:12]})"
        if ctx.test_data_sha256 and ctx.test_images
        else "any test data (this run's test split could not be loaded here, so the rows' data was not checked)"
    )
    parts = []
    if shown:
        more = f"; the first 20 of {len(shown)} are shown" if len(shown) > 20 else ""
        parts.append(table(["", *(h for h, _, _ in columns)], body, left=2))
        parts.append(note(
            f"`cnnlab bench` rows for model {model!r} on {dataset!r} measured on this machine ({here.machine}: "
            f"{here.cpu_model}, {here.cpu_count} cores, {gpu}), at input {size or '?'}, on {data}, best {first} "
            f"first{more}. {meaning}; measured with one pass per image over the whole test split in the backend's "
            "precision (no TTA), so it can differ from the test numbers above; latency: one batch of `batch` "
            "images. 'this run' marks rows of this checkpoint's weights."
        ))  # fmt: skip
    else:
        parts.append(note(
            f"no leaderboard row for model {model!r} on {dataset!r} compares with this run: none was measured on "
            f"this machine ({here.machine}) at input {size or '?'} on {data}. Add one with `cnnlab bench "
            f"{shlex.quote(str(ctx.run_dir))} --record{db}`."
        ))  # fmt: skip
    if left_out:
        listed = "; ".join(f"{len(v)} {reason}" for reason, v in left_out.items())
        args = f"--model {shlex.quote(str(model))} --dataset {shlex.quote(str(dataset))} --machine all{db}"
        parts.append(note(
            f"left out {sum(len(v) for v in left_out.values())} rows that do not compare with these: {listed}. "
            f"`cnnlab leaderboard {args}` lists them."
        ))  # fmt: skip
    return "".join(parts)


def comparable_rows(
    rows: Sequence[dict[str, Any]], machine: str, input_size: str | None, data_sha256: str | None
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The rows measured like this run (same machine, input size and test data), and the rest by reason.

    A row's latency compares only on its own machine, its accuracy only on the same test images (the
    leaderboard's ``data_sha256``); rows recorded before the leaderboard kept that hash cannot be checked.
    ``data_sha256=None`` (the test split is not available here) leaves the test data unchecked.

    >>> rows = [{"machine": "a", "input_size": "1x28x28", "data_sha256": "d"}, {"machine": "b"}]
    >>> comparable_rows(rows, "a", "1x28x28", "d")[1]
    {'from another machine': [{'machine': 'b'}]}
    """
    shown: list[dict[str, Any]] = []
    left_out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("machine") != machine:
            reason = "from another machine"
        elif input_size is not None and row.get("input_size") not in (None, input_size):
            reason = f"at another input size than {input_size}"
        elif data_sha256 is not None and row.get("data_sha256") is None:
            reason = "with no record of their test data (recorded before leaderboard schema 2)"
        elif data_sha256 is not None and row.get("data_sha256") != data_sha256:
            reason = "measured on other test data (another data sha256)"
        else:
            shown.append(row)
            continue
        left_out.setdefault(reason, []).append(row)
    return shown, left_out


def leaderboard_rows(
    model: object, dataset: object, db_path: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """The leaderboard's rows for this model and dataset.

    The leaderboard file is ``db_path`` (``--db``) or the bench default (``$CNNLAB_LEADERBOARD`` or
    the user's data folder); a missing file gives ``[]``.
    """
    return Leaderboard(db_path=db_path).rows(model=model, dataset=dataset)
