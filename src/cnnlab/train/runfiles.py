"""The files of a run directory: config.json, metrics.jsonl, metrics.json, the checkpoint.

Only the main process (rank 0) writes; every file is replaced atomically, so a reader (or a kill)
never sees half of one. ``metrics.jsonl`` gets one line per finished epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cnnlab.train.checkpoint import (
    META_NAME,
    STATE_NAME,
    WEIGHTS_NAME,
    atomic_write_bytes,
    atomic_write_json,
    read_train_state_info,
    save_model,
)
from cnnlab.train.config import TrainConfig
from cnnlab.train.state import TrainState, save_state

__all__ = ["RunFiles", "check_run_dir", "default_run_dir", "latest_run_dir", "resume_config"]


# What `cnnlab train` (and `cnnlab report`, `cnnlab viz` by default) write into a run directory; --overwrite
# deletes them so nothing of the old run is left beside the new one.
RUN_FILES = ("config.json", "metrics.json", "metrics.jsonl", WEIGHTS_NAME, META_NAME, STATE_NAME, "report.html")
RUN_FOLDERS = ("viz",)
RUN_MARKERS = (META_NAME, STATE_NAME, "metrics.json")  # any of them: the directory holds a run worth keeping


def default_run_dir(model: str, root: str | Path = "runs") -> Path:
    """``runs/<UTC timestamp>-<model>`` (not created), e.g. ``runs/20260101-120000-fastnet`` (``-2``... if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    path, n = Path(root) / f"{stamp}-{safe}", 2
    while path.exists():
        path, n = Path(root) / f"{stamp}-{safe}-{n}", n + 1
    return path


def _claim(path: Path) -> Path:
    """Create ``path`` (or ``path-2``, ``path-3``... if it exists) with an atomic mkdir; the folder made."""
    candidate, n = path, 2
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            candidate, n = path.with_name(f"{path.name}-{n}"), n + 1


def _unwritable_reason(path: Path) -> str | None:
    """Why no run directory can be made or written at ``path``, or ``None`` when it can (as far as we can tell)."""
    if path.exists():
        if not path.is_dir():
            return "is a file, not a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else "is a folder you may not write to"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"lies under {parent}, which is a file, so no folder can be made there"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"would be made in {parent}, which you may not write to"


def _unwritable(path: Path, reason: str) -> ValueError:
    return ValueError(
        f"--out {path}: the run directory {reason}. --out names a folder that cnnlab train creates (or one it "
        "already made) and writes the checkpoint, metrics and config into; choose another --out, e.g. runs/NAME."
    )


def _describe_run(path: Path, found: list[str]) -> str:
    """'a fastnet run (test accuracy 0.8180 after 2 epochs)', or the run files found when metrics.json is unreadable."""
    try:
        m = json.loads((path / "metrics.json").read_text())
        epochs = f"{m['epochs']} epoch{'' if m['epochs'] == 1 else 's'}"
        return f"a {m['model']} run (test accuracy {m['test_accuracy']:.4f} after {epochs})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"a run ({', '.join(found)})"


def check_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse an ``--out`` that cannot hold a run, or that holds one already (unless ``resume`` or ``overwrite``).

    >>> check_run_dir("runs/new-run")
    """
    path = Path(path)
    if resume and overwrite:
        raise ValueError(
            f"--resume continues the run in --out {path} and --overwrite deletes it to start a new one; "
            "pass one of them."
        )
    if (reason := _unwritable_reason(path)) is not None:
        raise _unwritable(path, reason)
    found = [name for name in RUN_MARKERS if (path / name).is_file()]
    if found and not resume and not overwrite:
        raise ValueError(
            f"--out {path} already holds {_describe_run(path, found)}; training there would replace its "
            "weights and metrics and leave the rest describing the old model. Continue it with --resume "
            f"--out {path}, choose a new --out, or pass --overwrite to delete it and train a new run in its "
            "place (fit(): resume=True or overwrite=True)."
        )


def resume_config(run_dir: Path) -> TrainConfig:
    """The settings of the run to resume: ``config.json``, or the copy inside ``train_state.safetensors``."""
    path = run_dir / "config.json"
    if not path.is_file() and (run_dir / STATE_NAME).is_file():
        path = run_dir / STATE_NAME
        saved: Any = read_train_state_info(path).get("config")
    elif not path.is_file():
        raise ValueError(
            f"--resume needs a run directory with config.json and {STATE_NAME}; {str(run_dir)!r} has neither. "
            "Pass the run with --out DIR."
        )
    else:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise _damaged_config(path, f"it is not valid JSON ({err})") from None
    if not isinstance(saved, dict):
        raise _damaged_config(path, f"it holds a JSON {type(saved).__name__}, not the settings object")
    try:
        return TrainConfig.from_dict(saved)
    except ValueError as err:
        raise _damaged_config(path, f"its settings are not valid ({err})") from None


def _damaged_config(path: Path, problem: str) -> ValueError:
    if path.name == STATE_NAME:
        return ValueError(
            f"--resume: the settings stored in {path} are damaged: {problem}. It cannot be resumed; start the run "
            "again without --resume, or from its model.safetensors with --init-from."
        )
    return ValueError(
        f"--resume: {path}, the settings of the run to resume, is damaged: {problem}. Delete it and run the "
        f"same command again: --resume then takes the settings from the copy in {STATE_NAME} (and writes "
        "config.json anew); or restore the file from a copy."
    )


def latest_run_dir(root: str | Path = "runs") -> Path | None:
    """The most recently written run under ``root`` that has a training state (for ``--resume``)."""
    candidates = [p.parent for p in Path(root).glob(f"*/{STATE_NAME}")]
    return max(candidates, key=lambda p: (p / STATE_NAME).stat().st_mtime, default=None)


class RunFiles:
    """Writer of one run directory; a no-op on ranks other than 0 (``enabled=False``)."""

    def __init__(
        self, run_dir: str | Path, enabled: bool = True, *, replace: bool = False, claim: bool = False
    ) -> None:
        """``replace``: first delete what an earlier run left in ``run_dir`` (``--overwrite``); see ``replaced``.

        ``claim``: ``run_dir`` is a default name (:func:`default_run_dir`) that must become this run's own
        folder: it is created atomically, and if another run took it meanwhile (two runs started in the
        same second), ``-2``, ``-3``... is appended; ``dir`` is the folder claimed.
        """
        self.dir = Path(run_dir)
        self.enabled = enabled
        self.replaced: list[str] = []
        if enabled:
            try:
                self.dir = _claim(self.dir) if claim else self.dir
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise _unwritable(self.dir, f"cannot be created ({err.strerror or err})") from None
            self.remove_stale_temp_files()
            if replace:
                self.replaced = self.remove_previous_run()

    def remove_previous_run(self) -> list[str]:
        """Delete the files and folders an earlier run wrote here (``RUN_FILES``, ``RUN_FOLDERS``); their names."""
        removed = []
        for name in RUN_FILES:
            if (self.dir / name).is_file():
                (self.dir / name).unlink()
                removed.append(name)
        for name in RUN_FOLDERS:
            if (self.dir / name).is_dir():
                shutil.rmtree(self.dir / name)
                removed.append(f"{name}/")
        return removed

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete ``.NAME.*.tmp`` files that a killed writer left behind (never read by any loader)."""
        stale = [p for p in self.dir.glob(".*.tmp") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_NAME

    def write_config(self, config: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_json(self.dir / "config.json", config)

    def checkpoint(self, state: TrainState, meta: dict[str, Any], config: dict[str, Any]) -> None:
        """Save the training state, then the evaluation weights (model.safetensors + model.json), then
        metrics.jsonl.

        Each file is replaced atomically; the order makes a kill between two of them harmless. The state
        is written first: it alone decides where ``--resume`` continues, and a resumed run rewrites the
        model files and the history from it (:meth:`restore_files`). ``metrics.jsonl`` is written last,
        so a line there means the whole checkpoint of that epoch is on disk.
        """
        if not self.enabled:
            return
        save_state(self.state_path, state, config)
        self.save_model_files(state, meta, config)
        self.write_history(state.history)

    def save_model_files(self, state: TrainState, meta: dict[str, Any], config: dict[str, Any]) -> None:
        """``model.safetensors`` + ``model.json``: the weights to evaluate (EMA when on) and what they are."""
        if not self.enabled:
            return
        weights = "ema" if state.ema is not None else "raw"
        last = state.history[-1] if state.history else {}
        model_meta = {**meta, "config": config, "epoch": state.epoch, "step": state.step,
                      "weights": weights, "metrics": last}  # fmt: skip
        save_model(state.eval_model, model_meta, self.dir)

    def restore_files(self, state: TrainState, meta: dict[str, Any], config: dict[str, Any]) -> None:
        """After ``--resume`` at an epoch boundary: rewrite the model files and the history from the state.

        A kill after the state was saved but before the model files or metrics.jsonl were (or between
        model.safetensors and model.json) leaves them one epoch behind; this puts them level again.
        """
        if self.enabled and state.batch == 0 and state.epoch > 0:
            self.save_model_files(state, meta, config)
            self.write_history(state.history)

    def save_interrupted(self, state: TrainState, config: dict[str, Any]) -> None:
        """Ctrl-C inside an epoch: only the training state, so the model files keep the last full epoch."""
        if self.enabled:
            save_state(self.state_path, state, config)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        # Rewritten whole (atomically) rather than appended: a resumed run never duplicates a line.
        if self.enabled:
            text = "".join(json.dumps(record) + "\n" for record in history)
            atomic_write_bytes(self.dir / "metrics.jsonl", text.encode())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """``metrics.json``, with the sha256 of the weights it was measured on (from ``model.json``)."""
        if self.enabled:
            meta = self.dir / META_NAME
            if meta.is_file():
                metrics["checkpoint_sha256"] = json.loads(meta.read_text()).get("sha256")
            atomic_write_json(self.dir / "metrics.json", metrics)
