"""The report's first section: the run's numbers, each with what it means (which images, weights and passes).

Used by :mod:`cnnlab.viz.report`.
"""

from __future__ import annotations

import shlex
from typing import Any

from cnnlab.viz.report_html import note, table
from cnnlab.viz.run_data import HISTORY_NAME, RunContext

__all__ = ["run_config", "summary_section"]


def summary_section(ctx: RunContext) -> str:
    m = ctx.metrics
    config = run_config(ctx)
    keys = ["model", "dataset", "test_accuracy", "epochs", "train_seconds", "params", "recipe", "seed", "init_from"]

    def value(k: str) -> object:
        return m.get(k, ctx.meta.get(k, config.get(k) if k in ("seed", "init_from") else None))

    rows: list[list[object]] = [[k, value(k)] for k in keys if value(k) is not None]
    extra: list[list[object]] = [
        [k, v] for k, v in m.items() if k not in keys and isinstance(v, (int, float, str)) and len(str(v)) < 80
    ]
    if not m:  # a run cut short: model.json says which epoch the weights are from
        last = ctx.meta.get("metrics")
        val = last.get("val_accuracy") if isinstance(last, dict) else None
        pairs: list[tuple[str, object]] = [
            ("epoch", ctx.meta.get("epoch")), ("weights", ctx.meta.get("weights")), ("val_accuracy", val),
        ]  # fmt: skip
        extra = [[k, v] for k, v in pairs if v is not None]
    meaning = _meanings(ctx)
    body = [[k, _fmt(v), meaning.get(str(k), "")] for k, v in rows + extra[:12]]
    out = table(["field", "value", "what it is"], body, left=3)
    if ctx.metrics_error:
        out += note(ctx.metrics_error, "err")
    elif not m:
        out += note(_unfinished(ctx), "warn")
    if ctx.load_error:
        out += note(f"model not loaded: {ctx.load_error}", "err")
    return out


def run_config(ctx: RunContext) -> dict[str, Any]:
    config = ctx.metrics.get("config") or ctx.meta.get("config") or {}
    return config if isinstance(config, dict) else {}


def _test_scope(ctx: RunContext) -> str:
    """Which test images, weights and passes gave metrics.json's test_* numbers."""
    m, config = ctx.metrics, run_config(ctx)
    cm = m.get("confusion_matrix")
    total = sum(sum(r) for r in cm) if isinstance(cm, list) and all(isinstance(r, list) for r in cm) else None
    limit = config.get("limit_test")
    if isinstance(limit, int) and limit > 0 and (total is None or limit <= total):
        images = f"the first {limit:,} test images (limit_test={limit})"
    else:
        images = "the whole test split" + (f" ({total:,} images)" if total else "")
    weights = {"ema": "EMA weights (moving average of the trained weights)", "raw": "the trained weights (no EMA)"}
    passes = (
        "each image averaged with its mirror (flip TTA)"
        if config.get("tta_flip") and m.get("task") != "reconstruction"
        else "one pass per image (no TTA)"
    )
    parts = [images, weights.get(str(m.get("weights")), ""), passes]
    if m.get("precision"):
        parts.append(f"in {m['precision']}")
    epochs = f" after the last epoch ({m['epochs']})" if isinstance(m.get("epochs"), int) else ""
    return f"{', '.join(p for p in parts if p)}; scored once{epochs}"


_TEST_METRICS = {
    "test_loss": "test loss (the training loss function)",
    "test_mean_iou": "test mean intersection-over-union over the classes",
    "test_pixel_accuracy": "test pixel accuracy (share of pixels labelled correctly)",
    "test_iou": "test intersection-over-union",
    "test_mse": "test mean squared error of the reconstructions",
}


def _meanings(ctx: RunContext) -> dict[str, str]:
    """field -> what the number means, for the summary's third column."""
    m, config = ctx.metrics, run_config(ctx)
    task = str(m.get("task") or ctx.meta.get("task") or "classification")
    epochs = m.get("epochs")
    out = {
        "epochs": "epochs trained in this run" + (" (after --init-from)" if config.get("init_from") else ""),
        "train_seconds": "seconds spent in training steps (evaluation and loading not counted)",
        "wall_seconds": "seconds from start to end of `cnnlab train`, evaluation and loading included",
        "params": "parameters, sum(p.numel())",
        "trainable_params": "parameters that were trained (requires_grad)",
        "steps": "optimizer steps",
        "images_per_second": "training images per second",
        "recipe": "training recipe (cnnlab train --recipe)",
        "seed": "random seed of the run",
        "init_from": "the run whose weights training started from (--init-from)",
        "weights": "weights saved and scored: ema = moving average of the trained weights, raw = as trained",
        "epoch": "last finished epoch: model.safetensors holds the weights from its end",
    }
    frac = config.get("val_fraction")
    held_out = f"{frac:.0%} of the training images, held out" if isinstance(frac, float) else "held out of training"
    when = f"after the last epoch ({epochs})" if isinstance(epochs, int) else "after the last finished epoch"
    out["val_accuracy"] = f"validation accuracy ({held_out}) {when}; not the test split"
    if not m:
        return out
    scope = _test_scope(ctx)
    out["test_accuracy"] = (
        f"test pixel accuracy (share of pixels labelled correctly) on {scope}"
        if task == "segmentation"
        else f"test accuracy (share of images classified correctly) on {scope}"
    )
    for key, what in _TEST_METRICS.items():
        same = m.get("test_accuracy") is not None
        out[key] = f"{what}, same images and weights as test_accuracy" if same else f"{what} on {scope}"
    return out


def _unfinished(ctx: RunContext) -> str:
    """What the page says about a run directory without metrics.json."""
    from cnnlab.train.checkpoint import STATE_NAME

    run = ctx.run_dir
    done = ctx.meta.get("epoch") or (ctx.history[-1].get("epoch") if ctx.history else None)
    planned = run_config(ctx).get("epochs")
    of = f" of {planned}" if planned else ""
    weights = f"The weights are from the end of epoch {done}{of}; " if done else ""
    nxt = (
        f"Finish it with `cnnlab train --resume --out {shlex.quote(str(run))}`."
        if (run / STATE_NAME).is_file()
        else "Its training state is gone too, so train it again to get the test scores."
    )
    return (
        f"training has not finished: {run} has no metrics.json, which `cnnlab train` writes after the last epoch "
        f"when it scores the test split. {weights}there is no test accuracy yet, and the curves come from "
        f"{HISTORY_NAME} (one line per finished epoch). {nxt}"
    )


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)
