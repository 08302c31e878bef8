"""Training curves, confusion matrix, misclassified examples and segmentation overlays.

Curves read the ``history`` list of ``metrics.json`` (one dict per epoch): every numeric key with
``loss`` in its name goes to the loss panel, every key with ``acc`` to the accuracy panel, and
``lr`` / ``learning_rate`` to the learning-rate panel, so new metrics show up without code changes.

>>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 2).tolist()
[[1, 0], [1, 1]]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from cnnlab.viz.grid import compact, figure_array, new_figure, save_png
from cnnlab.viz.images import to_display

__all__ = [
    "confusion_figure",
    "confusion_matrix",
    "curve_series",
    "curves_figure",
    "misclassified_figure",
    "segmentation_figure",
]

_PANELS = (("loss", ("loss",)), ("accuracy", ("acc",)), ("learning rate", ("lr", "learning_rate")))


def _panel_of(key: str) -> str | None:
    low = key.lower()
    if low in ("lr", "learning_rate") or low.endswith("_lr"):
        return "learning rate"
    if "loss" in low:
        return "loss"
    if "acc" in low:
        return "accuracy"
    return None


def curve_series(
    history: Sequence[Mapping[str, Any]],
) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """panel -> key -> (x, y) from a metrics history; x is ``epoch`` when present, else 1, 2, ...

    >>> curve_series([{"epoch": 1, "train_loss": 0.5, "lr": 0.1}])["loss"]
    {'train_loss': ([1.0], [0.5])}
    """
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for i, row in enumerate(history):
        x = float(row.get("epoch", i + 1))
        for key, value in row.items():
            panel = _panel_of(key)
            if panel is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(float(value)):
                continue
            xs, ys = out.setdefault(panel, {}).setdefault(key, ([], []))
            xs.append(x)
            ys.append(float(value))
    return out


def curves_figure(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Loss, accuracy and learning-rate panels side by side (only those the history has)."""
    series = curve_series(history)
    if not series:
        raise ValueError(
            "metrics history has no loss, accuracy or lr values to plot; received keys "
            f"{sorted({k for row in history for k in row})}."
        )
    panels = [name for name, _ in _PANELS if name in series]
    fig = new_figure(4.0 * len(panels), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))  # type: ignore[attr-defined]
    for ax, name in zip(axes, panels):
        for key, (xs, ys) in sorted(series[name].items()):
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no tick at 1.2
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    compact(fig, left=0.07, bottom=0.16, wspace=0.25)
    return _finish(fig, path)


def _finish(fig: object, path: str | os.PathLike[str] | None) -> np.ndarray:
    picture = figure_array(fig)
    if path is not None:
        save_png(picture, Path(path))
    return picture


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts: row = true class, column = predicted class."""
    idx = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def confusion_figure(
    cm: torch.Tensor, classes: Sequence[str], path: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The confusion matrix with row-normalised colours and the counts written in the cells."""
    n = cm.shape[0]
    counts = cm.numpy()
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    side = max(3.5, 0.45 * n + 1.5)
    fig = new_figure(side + 1.0, side)
    ax = fig.subplots()  # type: ignore[attr-defined]
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        for (r, c), v in np.ndenumerate(counts):
            ax.text(
                c,
                r,
                str(v),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[r, c] > 0.5 else "black",
            )
    labels = [_short(c) for c in classes] if len(classes) == n else [str(i) for i in range(n)]
    # parse_math=False: a class (folder) name such as "$5 and $6" is text, not a TeX formula
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7, parse_math=False)
    ax.set_yticks(range(n), labels, fontsize=7, parse_math=False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"confusion matrix ({counts.sum()} images, accuracy {acc:.1%})", fontsize=9)
    compact(fig, left=0.2, bottom=0.2, top=0.92)
    return _finish(fig, path)


def _short(name: object, width: int = 12) -> str:
    """A class name cut to ``width`` characters, marked with an ellipsis when cut.

    >>> _short("Ankle boot"), _short("a very long class name")
    ('Ankle boot', 'a very long…')
    """
    text = str(name)
    return text if len(text) <= width else text[: width - 1] + "…"


def misclassified_figure(
    images: torch.Tensor,
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    classes: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    *,
    max_images: int = 16,
) -> np.ndarray:
    """Up to ``max_images`` wrongly classified images ``uint8 (N, C, H, W)`` titled "true -> predicted"."""
    wrong = torch.nonzero(y_true != y_pred).flatten()[:max_images].tolist()
    cols = min(8, max(1, len(wrong)))
    rows = max(1, math.ceil(len(wrong) / cols))
    fig = new_figure(1.5 * cols, 1.7 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)  # type: ignore[attr-defined]
    for ax in axes:
        ax.axis("off")
    if not wrong:
        axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    for ax, i in zip(axes, wrong):
        ax.imshow(to_display(images[i]), interpolation="nearest")
        # each name shortened on its own, so the predicted class is never cut off
        title = f"{_short(classes[int(y_true[i])])} -> {_short(classes[int(y_pred[i])])}"
        ax.set_title(title, fontsize=7, parse_math=False)
    compact(fig, left=0.02, right=0.98, bottom=0.02, top=0.88, hspace=0.45)
    return _finish(fig, path)


def segmentation_figure(
    images: torch.Tensor,
    masks_true: torch.Tensor,
    masks_pred: torch.Tensor,
    path: str | os.PathLike[str] | None = None,
    *,
    alpha: float = 0.45,
) -> np.ndarray:
    """Rows of image, true mask overlay and predicted mask overlay (class 0 = background, uncoloured)."""
    import matplotlib

    n = images.shape[0]
    palette = matplotlib.colormaps["tab10"](np.arange(10))[:, :3] * 255.0  # (10, 3)
    fig = new_figure(6.0, 2.0 * n)
    axes = np.asarray(fig.subplots(n, 3)).reshape(n, 3)  # type: ignore[attr-defined]
    for i in range(n):
        base = to_display(images[i]).astype(np.float64)
        for j, (mask, title) in enumerate(((None, "image"), (masks_true[i], "true"), (masks_pred[i], "predicted"))):
            shown = base if mask is None else overlay(base, mask.numpy(), palette, alpha)
            axes[i, j].imshow(shown.astype(np.uint8), interpolation="nearest")
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
    compact(fig, left=0.02, right=0.98, bottom=0.02, top=0.94, hspace=0.25)
    return _finish(fig, path)


def overlay(base: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """Blend class colours into ``base`` (H, W, 3) where ``mask`` (H, W) is not background (0)."""
    colours = palette[(mask.astype(np.int64) - 1) % len(palette)]  # (H, W, 3)
    fg = (mask > 0)[..., None]
    out: np.ndarray = np.where(fg, (1 - alpha) * base + alpha * colours, base)
    return out
