"""The files of a run directory: config.json, metrics.jsonl, metrics.json, the checkpoint.

Only the main process (rank 0) writes; every file is replaced atomically, so a reader (or a kill)
never sees half of one. ``metrics.jsonl`` gets one line per finished epoch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cnnlab.train.checkpoint import STATE_NAME, atomic_write_bytes, atomic_write_json, save_model
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

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_NAME

    def write_config(self, config: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_json(self.dir / "config.json", config)

    def checkpoint(self, state: TrainState, meta: dict[str, Any], config: dict[str, Any]) -> None:
        """Save the evaluation weights (model.safetensors + model.json), then the training state.

        The state file is written last: ``--resume`` reads only it, so a kill between the two writes
        at worst repeats this epoch's bookkeeping, never mixes epochs.
        """
        if not self.enabled:
            return
        weights = "ema" if state.ema is not None else "raw"
        last = state.history[-1] if state.history else {}
        model_meta = {**meta, "config": config, "epoch": state.epoch, "step": state.step,
                      "weights": weights, "metrics": last}  # fmt: skip
        save_model(state.eval_model, model_meta, self.dir)
        self.write_history(state.history)
        save_state(self.state_path, state, config)

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
        if self.enabled:
            atomic_write_json(self.dir / "metrics.json", metrics)
