"""``cnnlab leaderboard``: the recorded measurements as a table, Pareto front marked, per machine.

Rows are ranked only against rows from the same machine: by default only this machine's rows are
shown (with a note of how many others are hidden); ``--machine all`` shows every machine as its own
group, ``--machine ID`` one machine by fingerprint prefix. ``*`` marks the Pareto front of each group
(machine, test data, input size, batch size): no other row is both at least as accurate and at least as
fast. A row of an untrained registered model (speed only) shows ``(untrained)`` as its dataset; a
fine-tuned checkpoint (``cnnlab train --init-from``) shows the sha256 of the weights it started from.

Each task is its own table with its own score, since the scores do not compare across tasks:
classification shows accuracy, segmentation pixel accuracy and mean IoU, reconstruction the MSE
(lower is better; it has no accuracy).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

NAME = "leaderboard"
HELP = "Show the leaderboard (accuracy vs latency at batch 4), Pareto front marked; CSV/JSON/Markdown export."

_DISPLAY = (  # (header, row key, format); the task's score columns follow backend
    ("model", "model", "s"),
    ("dataset", "dataset", "s"),
    ("backend", "backend", "s"),
    ("median ms", "latency_median_ms", ".3f"),
    ("p90 ms", "latency_p90_ms", ".3f"),
    ("n", "latency_n", "d"),
    ("batch", "batch_size", "d"),
    ("img/s", "throughput", ",.0f"),
    ("threads", "threads", "d"),
    ("params", "params", ",d"),
    ("MACs", "macs", ",d"),
    ("input", "input_size", "s"),
    ("test imgs", "test_images", ",d"),
    ("data sha256", "data_sha256", "sha"),
    ("sha256", "checkpoint_sha256", "sha"),
    ("fine-tuned from", "init_from_sha256", "sha"),
    ("recorded", "created_at", "s"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="leaderboard database file (default: the user data directory)")
    parser.add_argument("--sort", choices=["accuracy", "speed"], default="accuracy",
                        help="accuracy (best score first: accuracy, pixel accuracy, or lowest MSE for "
                             "reconstruction) or speed (lowest latency first); default accuracy")  # fmt: skip
    parser.add_argument("--dataset", help="only rows measured on this dataset")
    parser.add_argument("--model", help="only rows of this model")
    parser.add_argument("--machine", default="current",
                        help="current (default), all (grouped by machine) or a fingerprint id prefix")  # fmt: skip
    parser.add_argument(
        "--format", choices=["text", "csv", "json", "md"], default="text", help="output format (default text)"
    )


def _cell(value: Any, spec: str) -> str:
    if value is None or value == "":
        return "-"
    if spec == "sha":
        return str(value)[:12]
    if spec == "s":
        return str(value)
    return format(value, spec)


def _shown(row: dict[str, Any], key: str, spec: str) -> str:
    from cnnlab.bench.leaderboard import row_value  # not at import: every cnnlab command builds this parser

    if key == "dataset" and row.get("dataset") is None and row.get("checkpoint_sha256") is None:
        return "(untrained)"  # a registered model without weights: timed on random inputs, no accuracy
    return _cell(row_value(row, key), spec)


def _groups(rows: list[dict[str, Any]]) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
    """(machine, task, rows) in the order of the machines' first rows, then classification, segmentation, ..."""
    from cnnlab.bench.leaderboard import TASK_ORDER, row_task

    out: dict[str, dict[str | None, list[dict[str, Any]]]] = {}
    for row in rows:
        task = row_task(row)
        out.setdefault(str(row["machine"]), {}).setdefault(task, []).append({**row, "task": task})
    return [(m, t, tasks[t]) for m, tasks in out.items() for t in TASK_ORDER if t in tasks]


def _describe(rows: list[dict[str, Any]]) -> str:
    r = rows[0]
    gpu = "no GPU" if r.get("gpu") in (None, "none") else f"GPU {r['gpu']}"
    return f"machine {r['machine']}: {r.get('cpu_model') or '?'}, {r.get('cpu_count') or '?'} cores, {gpu}"


def _ranked(rows: list[dict[str, Any]], task: str | None, sort: str) -> list[dict[str, Any]]:
    from cnnlab.bench.leaderboard import TASK_SCORES, pareto_front, row_value

    (_, key, _), *_ = TASK_SCORES[task][0]
    sign = -1.0 if TASK_SCORES[task][2] else 1.0  # the front wants "higher is better": an MSE counts negated

    def score(row: dict[str, Any]) -> float | None:
        value = row_value(row, key)
        return None if value is None else sign * float(value)

    if sort == "accuracy" and sign < 0:  # the database sorted by accuracy, which a reconstruction lacks
        rows = sorted(rows, key=lambda r: (score(r) is None, -(score(r) or 0.0), r.get("latency_median_ms") or 0.0))
    front = pareto_front([{**row, "accuracy": score(row)} for row in rows])
    return [{"rank": i + 1, "pareto": f, **row} for i, (row, f) in enumerate(zip(rows, front))]


def _table(rows: list[dict[str, Any]], task: str | None, markdown: bool) -> list[str]:
    from cnnlab.bench.leaderboard import TASK_SCORES

    columns = [*_DISPLAY[:3], *TASK_SCORES[task][0], *_DISPLAY[3:]]
    header = ["#", "front"] + [h for h, _, _ in columns]
    body = [[str(r["rank"]), "*" if r["pareto"] else ""] + [_shown(r, k, s) for _, k, s in columns] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in body]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    left = {"model", "dataset", "data sha256", "input", "backend", "sha256", "fine-tuned from", "recorded", "front"}
    return [
        "  ".join(c.ljust(w) if h in left else c.rjust(w) for c, w, h in zip(row, widths, header)).rstrip()
        for row in [header, *body]
    ]


def _explain_no_match(every: list[dict[str, Any]], model: str | None, dataset: str | None) -> None:
    """Raise naming the --model/--dataset filter that matched nothing, with the values that are recorded."""
    for option, key, value in (("--model", "model", model), ("--dataset", "dataset", dataset)):
        present = sorted({str(r[key]) for r in every if r.get(key) is not None})
        if value is not None and value not in present:
            raise ValueError(
                f"{option} {value!r} matches no leaderboard row; the rows recorded have {key} "
                f"{', '.join(present) or '(none yet)'}. Pick one of those, or leave {option} out."
            )
    if every:  # each value exists, but not together
        raise ValueError(
            f"no leaderboard row has both model {model!r} and dataset {dataset!r}; each appears only with "
            "another. Leave one of --model/--dataset out to see them."
        )


def run(args: argparse.Namespace) -> int:
    from cnnlab.bench.leaderboard import TASK_SCORES, Leaderboard

    board = Leaderboard(args.db)
    if args.db and not board.path.is_file():
        raise FileNotFoundError(
            f"--db {args.db!r}: no leaderboard database at {str(board.path)!r}. Check the path, or record a "
            f"first result there with `cnnlab bench RUN --record --db {args.db}`."
        )
    rows = board.rows(model=args.model, dataset=args.dataset, sort=args.sort)
    if not rows and (args.model or args.dataset):
        _explain_no_match(board.rows(), args.model, args.dataset)
    hidden_rows, hidden_machines, here = 0, 0, None
    if args.machine == "current":
        from cnnlab.bench.fingerprint import machine_fingerprint

        here = machine_fingerprint().machine
        others = [r for r in rows if r["machine"] != here]
        hidden_rows, hidden_machines = len(others), len({r["machine"] for r in others})
        rows = [r for r in rows if r["machine"] == here]
    elif args.machine != "all":
        rows = [r for r in rows if str(r["machine"]).startswith(args.machine)]
        if not rows:
            known = sorted({r["machine"] for r in board.rows(model=args.model, dataset=args.dataset)})
            raise ValueError(
                f"--machine {args.machine!r} matches no rows; it takes current, all, or a fingerprint id prefix "
                f"of one of the recorded machines: {', '.join(known) or 'none recorded'}."
            )
    groups = [(m, t, _ranked(g, t, args.sort)) for m, t, g in _groups(rows)]
    note = ""
    if hidden_rows:
        note = (f"{hidden_rows} rows from {hidden_machines} other machine(s) hidden: rows are ranked only against "
                "the same machine; --machine all shows every machine as its own group")  # fmt: skip

    if args.format == "json":
        print(json.dumps({
            "machine_filter": args.machine if here is None else here, "sort": args.sort,
            "hidden_rows": hidden_rows, "hidden_machines": hidden_machines,
            "groups": [{"machine": m, "task": t, "score": TASK_SCORES[t][1], "rows": g} for m, t, g in groups],
        }, indent=2))  # fmt: skip
        return 0
    if args.format == "csv":
        from cnnlab.bench.leaderboard import COLUMN_NAMES

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["rank", "pareto", *COLUMN_NAMES])
        for _, _, group in groups:
            for r in group:
                metrics = json.dumps(r["metrics"], sort_keys=True) if r.get("metrics") else ""
                values = [metrics if c == "metrics" else r.get(c) for c in COLUMN_NAMES]
                writer.writerow([r["rank"], int(r["pareto"]), *["" if v is None else v for v in values]])
        sys.stdout.write(buf.getvalue())
        if note:
            print(note, file=sys.stderr)
        return 0
    markdown = args.format == "md"
    out: list[str] = []
    if not groups:
        out.append(f"no leaderboard rows in {board.path}" + (" for this machine" if here else "") + ".")
    for _, task, group in groups:
        title = f"{_describe(group)}; {task or 'task not recorded'}: {TASK_SCORES[task][1]} (sorted by " + (
            f"{args.sort}; * = Pareto front: no row of the same test data, input size and batch size has both a "
            "better score and a lower latency)"
        )
        out += (["", f"### {title}", ""] if markdown else ["", title]) + _table(group, task, markdown)
    if note:
        out += ["", note]
    print("\n".join(out).strip("\n"))
    return 0
