"""``cnnlab report RUN_DIR``: one self-contained report.html of a training run (works offline, from file:)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "Write a self-contained HTML report of a run: architecture, lint, curves, confusion, kernels, Grad-CAM."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `cnnlab train`")
    parser.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")
    parser.add_argument(
        "--max-images", type=int, default=500, help="test images evaluated for the examples (default 500)"
    )
    parser.add_argument(
        "--db", help="leaderboard database whose rows the report shows (default: the one `cnnlab bench --record` uses)"
    )


def run(args: argparse.Namespace) -> int:
    import time

    from cnnlab.viz.outpath import check_out_file
    from cnnlab.viz.report import REPORT_NAME, check_not_foreign, write_report

    if args.max_images < 1:
        raise ValueError(f"--max-images must be at least 1; received {args.max_images}.")
    run_dir = Path(args.run_dir).expanduser()
    _check_run_dir(run_dir)
    if run_dir.is_dir() and not (run_dir / "model.json").is_file() and not (run_dir / "metrics.json").is_file():
        from cnnlab.train.checkpoint import STATE_NAME, unfinished_run_message

        if (run_dir / STATE_NAME).is_file():
            raise FileNotFoundError(unfinished_run_message(run_dir))
        raise FileNotFoundError(
            f"RUN_DIR {str(run_dir)!r} holds neither model.json nor metrics.json, so it is not a run of "
            "`cnnlab train`; pass the --out directory of a training run."
        )
    target = Path(args.out) if args.out else run_dir / REPORT_NAME
    # checked before the minutes of work: a folder, a file's child or an unwritable place fails now
    check_out_file(target, suffixes=(".html", ".htm"), given=bool(args.out), example="report")
    # never replace a page of the user's: only a report this command wrote
    check_not_foreign(target, option="--out", given=bool(args.out))
    _check_db(args.db)
    start = time.perf_counter()
    left_out: dict[str, list[str]] = {}  # reason -> section titles, so a shared reason is said once
    out = write_report(
        run_dir,
        out=target,
        max_images=args.max_images,
        leaderboard_db=args.db,
        on_skip=lambda title, reason: left_out.setdefault(reason, []).append(title),
    )
    size = out.stat().st_size
    for reason, titles in left_out.items():
        print(f"note: left out {_titles(titles)}: {' '.join(reason.split())}")
    print(f"wrote {out} ({size / 1e3:.0f} kB, self-contained) in {time.perf_counter() - start:.1f} s")
    print(f"open it with: file://{out.resolve()}")
    return 0


def _check_run_dir(run_dir: Path) -> None:
    """A RUN_DIR that does not exist or is a file fails in one paragraph naming it (not as a --out problem)."""
    import shlex

    forms = "RUN_DIR is the folder a `cnnlab train` run wrote (its --out, holding model.json and metrics.json)"
    if run_dir.is_file():
        parent = run_dir.parent
        if (parent / "model.json").is_file() or (parent / "metrics.json").is_file():
            fix = f"pass the folder that holds it: `cnnlab report {shlex.quote(str(parent))}`"
        else:
            fix = "pass the folder of a training run instead"
        raise ValueError(f"RUN_DIR {str(run_dir)!r} is a file; {forms}. Received a file, so {fix}.")
    if not run_dir.exists():
        raise FileNotFoundError(
            f"RUN_DIR {str(run_dir)!r} does not exist; {forms}. Check the path (runs are under runs/ unless "
            "train was given --out)."
        )


def _titles(titles: list[str]) -> str:
    return f"section '{titles[0]}'" if len(titles) == 1 else f"{len(titles)} sections ({'; '.join(titles)})"


def _check_db(db: str | None) -> None:
    """A ``--db`` that is a folder, no file or a damaged file fails now, with bench's own rules and wording."""
    if db is None:
        return
    from cnnlab.bench.leaderboard import Leaderboard

    board = Leaderboard(db)  # a folder is refused here
    if not board.path.is_file():
        raise FileNotFoundError(
            f"--db {db!r}: no leaderboard database at {str(board.path)!r}. Check the path, or record a result "
            f"there first with `cnnlab bench RUN --record --db {db}`."
        )
    try:
        board.count()  # opens it: a damaged or foreign file is named before the minutes of work
    except ValueError as err:
        raise ValueError(f"--db {db!r}: {err}") from None
