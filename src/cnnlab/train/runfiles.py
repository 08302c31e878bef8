"""The files of a run directory: config.json, metrics.jsonl, metrics.json, the checkpoint.

Only the main process (rank 0) writes; every file is replaced atomically, so a reader (or a kill)
never sees half of one. ``metrics.jsonl`` gets one line per finished epoch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cnnlab.train.checkpoint import META_NAME, STATE_NAME, atomic_write_bytes, atomic_write_json, save_model
from cnnlab.train.state import TrainState, save_state

__all__ = ["RunFiles", "default_run_dir", "latest_run_dir"]


def default_run_dir(model: str, root: str | Path = "runs") -> Path:
    """``runs/<UTC timestamp>-<model>`` (not created), e.g. ``runs/20260101-120000-fastnet``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return Path(root) / f"{stamp}-{safe}"


def latest_run_dir(root: str | Path = "runs") -> Path | None:
    """The most recently written run under ``root`` that has a training state (for ``--resume``)."""
    candidates = [p.parent for p in Path(root).glob(f"*/{STATE_NAME}")]
    return max(candidates, key=lambda p: (p / STATE_NAME).stat().st_mtime, default=None)


class RunFiles:
    """Writer of one run directory; a no-op on ranks other than 0 (``enabled=False``)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.dir = Path(run_dir)
        self.enabled = enabled
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.remove_stale_temp_files()

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
