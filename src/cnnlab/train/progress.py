"""Live training progress: a rich bar on a terminal, plain lines elsewhere (pipes, CI, log files).

>>> p = Progress(mode="plain", total_steps=10, stream=io.StringIO())
>>> p.epoch_end(1, {"train_loss": 0.5, "val_accuracy": 0.9}); "epoch 1" in p.stream.getvalue()
True
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "choose_mode"]


def choose_mode(mode: str, stream: TextIO | None = None) -> str:
    """``auto`` -> ``rich`` on an interactive terminal, ``plain`` when piped or under ``CI=true``."""
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") or not stream.isatty():
        return "plain"
    return "rich"


def _fmt(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4f}" if abs(value) < 10 else f"{key} {value:.1f}")
        elif isinstance(value, int):
            parts.append(f"{key} {value}")
    return "  ".join(parts)


class Progress:
    """Step and epoch reporting; ``mode`` is ``rich``, ``plain`` or ``none``.

    The plain mode prints one line per epoch plus a line every ``plain_every_s`` seconds within an
    epoch, so a long epoch still shows it is alive in a CI log.
    """

    def __init__(
        self,
        mode: str = "auto",
        total_steps: int = 0,
        stream: TextIO | None = None,
        plain_every_s: float = 10.0,
        initial_step: int = 0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.mode = choose_mode(mode, self.stream)
        self.total_steps = total_steps
        self.plain_every_s = plain_every_s
        self._last_plain = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total_steps, completed=initial_step, info="")

    def step(self, step: int, epoch: int, loss: float, acc: float | None, images_per_s: float, lr: float) -> None:
        """Report optimizer step ``step`` (1-based count of steps done)."""
        acc_text = "" if acc is None else f" acc {acc:.3f}"
        info = f"epoch {epoch} loss {loss:.4f}{acc_text} {images_per_s:,.0f} img/s lr {lr:.4f}"
        if self.mode == "rich":
            self._bar.update(self._task, completed=step, info=info)
        elif self.mode == "plain" and time.perf_counter() - self._last_plain >= self.plain_every_s:
            self._last_plain = time.perf_counter()
            print(f"  step {step}/{self.total_steps} {info}", file=self.stream, flush=True)

    def epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        line = f"epoch {epoch}  {_fmt(metrics)}"
        if self.mode == "rich":
            self._bar.console.print(line)
        elif self.mode == "plain":
            print(line, file=self.stream, flush=True)
            self._last_plain = time.perf_counter()

    def message(self, text: str) -> None:
        if self.mode == "rich":
            self._bar.console.print(text)
        elif self.mode == "plain":
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


_ = io  # the doctest uses io.StringIO
