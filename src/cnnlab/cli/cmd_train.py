"""``cnnlab train``: train a model and write metrics, the checkpoint and the config to a run directory.

With no arguments it trains ``fastnet`` on Fashion-MNIST with the default fast recipe and writes
``runs/<timestamp>-fastnet``. ``torchrun --nproc_per_node N -m cnnlab train ...`` trains with
DistributedDataParallel (only rank 0 writes files).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

NAME = "train"
HELP = "Train a model (default: fastnet on Fashion-MNIST) and write metrics and a checkpoint."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Every default is None so that --resume can tell which options were given explicitly.
    parser.add_argument(
        "--model",
        help="registered model name (default: fastnet; unet for --recipe segmentation), or a spec file "
        "(.toml/.yaml/.json; its last linear layer is resized to the data's class count)",
    )
    parser.add_argument(
        "--data",
        help="fashion-mnist | mnist | cifar10 | cifar100 | folder:PATH | shapes | rot-NAME (default: fashion-mnist; "
        "shapes for --recipe segmentation); files not found on disk are downloaded",
    )
    parser.add_argument(
        "--epochs", type=int, help="number of passes over the training data (default: the recipe's; 8 for default)"
    )
    parser.add_argument(
        "--recipe",
        help="named set of settings (without --recipe, default; it becomes gpu when CUDA is available): "
        "default, long, quick, pytorch-mnist, segmentation, gpu",
    )
    parser.add_argument("--out", help="run directory (default: runs/<timestamp>-<model>)")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out (default: the latest run), after a kill or a stop "
        "(Ctrl-C or SIGTERM saves the state after the current step)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="--out holds a run already: delete it (weights, metrics, report, pictures) and train a new one there",
    )
    parser.add_argument("--seed", type=int, help="random seed (weights, split, shuffling, augmentation; default 0)")
    parser.add_argument(
        "--data-dir",
        help="folder holding the dataset files (default: $CNNLAB_DATA, ~/.cache/cnnlab, /usr/share/datasets)",
    )
    parser.add_argument("--init-from", help="run directory or .safetensors to start from (transfer learning)")
    parser.add_argument(
        "--freeze", choices=["features", "none"], help="features: train only the head; none (default): train all"
    )
    parser.add_argument(
        "--limit-train", type=int,
        help="use only the first N training images (quick runs; --set limit_test=N limits the test images)",
    )  # fmt: skip
    parser.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    parser.add_argument("--compile", action="store_true", help="run the training step through torch.compile")
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="override any TrainConfig field, e.g. --set lr=0.05 --set ema_decay=0.999",
    )  # fmt: skip


def _explicit(args: argparse.Namespace) -> dict[str, object]:
    names = {"model": "model", "data": "data", "epochs": "epochs", "seed": "seed", "data_dir": "data_dir",
             "init_from": "init_from", "freeze": "freeze", "limit_train": "limit_train"}  # fmt: skip
    return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}


def _fresh_settings(args: argparse.Namespace) -> dict[str, object]:
    """The explicit options of a new run; with --init-from, the model is the checkpoint's (a different --model
    is refused here, before any data is loaded)."""
    from cnnlab.train.setup import check_freeze, check_model_matches_source, source_model

    explicit = _explicit(args)
    check_freeze(args.freeze or "none", args.init_from)
    if args.init_from:
        source = source_model(args.init_from)
        if args.model:
            check_model_matches_source(args.model, args.init_from, source)
        else:
            explicit["model"] = source  # recorded in config.json and the run's default name
    return explicit


def _check_resumed_recipe(asked: str | None, recorded: str, out: Path) -> None:
    """``--resume`` keeps the run's own recipe: a different ``--recipe`` would be silently ignored."""
    if asked is None or asked == recorded or (asked == "default" and recorded == "gpu"):  # default became gpu
        return
    raise ValueError(
        f"--recipe {asked} with --resume: the run in {out} was trained with recipe {recorded!r}, and --resume "
        f"continues it with the same settings, so --recipe {asked} would not apply. Drop --recipe to continue "
        f"the run, or start a new run with --recipe {asked} --out NEW_DIR."
    )


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """cnnlab's warnings (e.g. skipped unreadable images) as one 'warning: ...' line, not Python's
    'file:line: Category: ...' form with a source line."""
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:  # fmt: skip
            if filename.startswith(str(Path(__file__).parents[1])):  # raised inside cnnlab
                print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run(args: argparse.Namespace) -> int:
    from cnnlab.train.distributed import state_hash
    from cnnlab.train.loop import fit
    from cnnlab.train.recipes import resolve_recipe
    from cnnlab.train.runfiles import latest_run_dir, resume_config

    out = Path(args.out) if args.out else None
    if args.resume:
        out = out or latest_run_dir()
        if out is None:
            raise ValueError(
                "--resume needs a run directory with config.json and train_state.safetensors; found none under "
                "runs/. Pass the run with --out DIR."
            )
        cfg = resume_config(out).with_overrides(_explicit(args)).with_overrides(args.assignments)
        _check_resumed_recipe(args.recipe, cfg.recipe, out)
    else:
        cfg = resolve_recipe(args.recipe or "default", _fresh_settings(args), args.assignments)
    with _warnings_as_lines():
        if cfg.recipe == "gpu" or args.compile:  # airbench-style: data resident on the GPU, optional torch.compile
            from cnnlab.train.gpu import fit_resident

            result = fit_resident(cfg, out, resume=args.resume, overwrite=args.overwrite, compile=args.compile)
        else:
            result = fit(cfg, out, resume=args.resume, overwrite=args.overwrite)
    if not args.no_report:  # rank 0 only; a failed report is one warning line, the run is already saved
        from cnnlab.viz.report import report_after_training

        if (line := report_after_training(result.run_dir)) is not None:
            print(line, flush=True)
    world = result.metrics["world_size"]
    if world > 1:  # lets a user (and the test suite) check that every replica ended identical
        import os

        print(f"rank {os.environ.get('RANK', '0')}/{world} weights sha256 {state_hash(result.state.model)}", flush=True)
    return 0
