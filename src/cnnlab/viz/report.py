"""One self-contained ``report.html`` per run: every picture embedded as a ``data:`` URI.

The page loads nothing from the network (a Content-Security-Policy forbids it), has no scripts and
works from a ``file:`` URL. Each section is built on its own: when one cannot be drawn (no test data
on this machine, a model without conv layers, ...) it says why and the rest of the report still
appears. ``cnnlab train`` writes it at the end of every run through :func:`report_after_training`.

>>> write_report("runs/fastnet")  # doctest: +SKIP
PosixPath('runs/fastnet/report.html')
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import os
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.viz.grid import png_data_uri
from cnnlab.viz.hooks import one_thread
from cnnlab.viz.run_data import (
    HISTORY_NAME,
    Batch,
    RunContext,
    Skip,
    analysis_of,
    load_history,
    load_metrics,
    load_run_data,
    need_data,
    need_model,
    task_of,
)

__all__ = [
    "REPORT_NAME",
    "SECTIONS",
    "check_not_foreign",
    "comparable_rows",
    "is_report",
    "report_after_training",
    "write_report",
]

REPORT_NAME = "report.html"
# section ids, in page order (tests check that every one is present)
SECTIONS = (
    "summary",
    "architecture",
    "lint",
    "curves",
    "confusion",
    "examples",
    "kernels",
    "features",
    "gradcam",
    "rf",
    "leaderboard",
)
_GENERATOR = "cnnlab-report"  # marks a page this module wrote: only such a file is ever overwritten
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}h1{font-size:1.6em}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%;image-rendering:pixelated}
.note{color:#666;font-style:italic}.warn{color:#a60}.err{color:#b00}figure{display:inline-block;margin:.4em}
figcaption{font-size:.8em;color:#555;text-align:center}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _img(picture: np.ndarray, alt: str, caption: str | None = None) -> str:
    tag = f'<img src="{png_data_uri(picture)}" alt="{_e(alt)}">'
    return f"<figure>{tag}<figcaption>{_e(caption)}</figcaption></figure>" if caption else tag


def _note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{_e(text)}</p>'


def _table(header: list[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    def cells(tag: str, values: Sequence[object]) -> str:
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{_e(v)}</{tag}>" for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', list(header))}</tr>{body}</table>"


# ------------------------------------------------------------------------------------------------ loading


# ------------------------------------------------------------------------------------------------ sections


def _summary(ctx: RunContext) -> str:
    m = ctx.metrics
    config = _config(ctx)
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
    out = _table(["field", "value", "what it is"], body, left=3)
    if ctx.metrics_error:
        out += _note(ctx.metrics_error, "err")
    elif not m:
        out += _note(_unfinished(ctx), "warn")
    if ctx.load_error:
        out += _note(f"model not loaded: {ctx.load_error}", "err")
    return out


def _config(ctx: RunContext) -> dict[str, Any]:
    config = ctx.metrics.get("config") or ctx.meta.get("config") or {}
    return config if isinstance(config, dict) else {}


def _test_scope(ctx: RunContext) -> str:
    """Which test images, weights and passes gave metrics.json's test_* numbers."""
    m, config = ctx.metrics, _config(ctx)
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
    m, config = ctx.metrics, _config(ctx)
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
    planned = _config(ctx).get("epochs")
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


def _architecture(ctx: RunContext) -> str:
    rep = analysis_of(ctx)
    rows = []
    for r in rep.layers:
        rf = "x".join(str(v) for v in r.rf.size) if r.rf is not None else ""
        jump = "x".join(f"{v:g}" for v in r.rf.jump) if r.rf is not None else ""
        rows.append(
            [
                r.name,
                r.type,
                "x".join(str(v) for v in r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}",
                rf,
                jump,
            ]
        )
    t = rep.totals
    rows.append(["total", "", "", f"{t.params:,}", f"{t.macs:,}", "", ""])
    head = ["layer", "type", "output shape", "params", "MACs", "RF", "jump"]
    return _table(head, rows, left=3) + _note(
        f"input {'x'.join(str(v) for v in rep.input_shape)}; {t.macs:,} MACs = {2 * t.macs:,} FLOPs; "
        f"activations {t.activation_bytes / 1e6:.2f} MB per image."
    )


def _lint(ctx: RunContext) -> str:
    warnings = analysis_of(ctx).warnings
    if not warnings:
        return _note("no design warnings.")
    rows = [[w.level, w.rule, w.layer, w.message] for w in warnings]
    return _table(["level", "rule", "layer", "message"], rows, left=4)


def _curves(ctx: RunContext) -> str:
    from cnnlab.viz.curves import curves_figure

    if ctx.metrics_error:
        raise Skip(ctx.metrics_error)
    source = f"{ctx.run_dir / 'metrics.json'} 'history'"
    history = ctx.metrics.get("history")
    if not ctx.metrics:  # a run cut short: the epochs it finished
        source, history = str(ctx.run_dir / HISTORY_NAME), ctx.history
        if ctx.history_error and not history:
            raise Skip(ctx.history_error)
        if not history:
            raise Skip(
                f"{ctx.run_dir} has neither metrics.json nor a {HISTORY_NAME} with a finished epoch, so there is "
                "no training history to plot."
            )
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise Skip(f"{source} is not a list of per-epoch records; received {type(history).__name__} {history!r:.60}.")
    if not history:
        raise Skip(f"{source} is empty: the run recorded no finished epoch.")
    out = _img(curves_figure(history), "training curves")
    if ctx.history_error and not ctx.metrics:
        out += _note(ctx.history_error, "err")
    return out + _note(
        f"per epoch, from {source}: train_* are averages over the epoch's training batches while the weights changed, "
        "val_* are scored on the held-out validation images at the epoch's end."
    )


def _confusion(ctx: RunContext) -> str:
    from cnnlab.viz.curves import confusion_figure, confusion_matrix

    task = task_of(ctx)
    if task == "segmentation":
        scores = [f"{k.removeprefix('test_')} {ctx.metrics[k]:.4f}" for k in ("test_pixel_accuracy", "test_mean_iou")]
        scores = [t for t, k in zip(scores, ("test_pixel_accuracy", "test_mean_iou")) if k in ctx.metrics]
        return _note(
            "segmentation run: the per-pixel results are shown as mask overlays in the next section"
            + (f" (test {', '.join(scores)})." if scores else ".")
        )
    if task == "reconstruction":
        mse = ctx.metrics.get("test_mse")
        return _note(
            "reconstruction run: no classes, so no confusion matrix; the next section shows inputs beside "
            "their reconstructions" + (f" (test MSE {mse:.5f})." if isinstance(mse, float) else ".")
        )
    recorded = ctx.metrics.get("confusion_matrix")
    classes = list(ctx.metrics.get("classes") or ctx.meta.get("classes") or [])
    if isinstance(recorded, list) and recorded and len(recorded) == len(recorded[0]):
        cm = torch.tensor(recorded, dtype=torch.int64)  # the test images training evaluated
        where = _recorded_split(ctx, int(cm.sum()))
    else:
        b = need_data(ctx)
        if b.outputs.ndim != 2:
            raise Skip(f"a confusion matrix needs class scores; the model returned {tuple(b.outputs.shape)}.")
        pred = b.outputs.argmax(1)
        cm = confusion_matrix(b.data.labels, pred, b.outputs.shape[1])
        classes = classes or list(b.data.classes)
        where = f"the first {len(pred)} test images"
    return _img(confusion_figure(cm, classes), "confusion matrix") + _note(f"rows: true class; on {where}.")


def _recorded_split(ctx: RunContext, total: int) -> str:
    """Which test images a matrix from metrics.json counts: all, or the first ``limit_test`` of them."""
    config = ctx.metrics.get("config") or ctx.meta.get("config") or {}
    limit = config.get("limit_test") if isinstance(config, dict) else None
    if isinstance(limit, int) and 0 < limit <= total:
        return f"the first {total:,} test images (training ran with limit_test={limit}; metrics.json)"
    return f"the whole test split, {total:,} images (metrics.json)"


def _examples(ctx: RunContext) -> str:
    from cnnlab.viz.curves import misclassified_figure, segmentation_figure

    b = need_data(ctx)
    task = task_of(ctx)
    k = min(4, len(b.data))
    if task == "segmentation":
        if b.data.masks is None or b.outputs.ndim != 4:
            raise Skip("segmentation overlays need test masks and per-pixel class scores.")
        fig = segmentation_figure(b.data.images[:k], b.data.masks[:k], b.outputs[:k].argmax(1))
        return _img(fig, "segmentation overlays") + _note(f"the first {k} test images: truth and prediction.")
    if task == "reconstruction":
        return _reconstructions(b, k)
    if b.outputs.ndim != 2:
        raise Skip(f"examples need class scores; the model returned {tuple(b.outputs.shape)}.")
    pred = b.outputs.argmax(1)
    wrong = int((pred != b.data.labels).sum())
    fig = misclassified_figure(b.data.images, b.data.labels, pred, b.data.classes)
    return _img(fig, "misclassified") + _note(
        f"{wrong} of the first {len(pred)} test images are misclassified; up to 16 are shown (true -> predicted)."
    )


def _reconstructions(b: Batch, k: int) -> str:
    from cnnlab.viz.grid import compact, figure_array, new_figure
    from cnnlab.viz.images import to_display

    if b.outputs.shape[1:] != b.inputs.shape[1:]:
        raise Skip(f"outputs {tuple(b.outputs.shape[1:])} do not have the input's shape {tuple(b.inputs.shape[1:])}.")
    fig = new_figure(2.0 * k, 4.2)
    axes = np.asarray(fig.subplots(2, k)).reshape(2, k)  # type: ignore[attr-defined]
    for i in range(k):
        err = float((b.outputs[i] - b.inputs[i]).square().mean())
        for row, (img, title) in enumerate(((b.inputs[i], "input"), (b.outputs[i], f"output (MSE {err:.3f})"))):
            axes[row, i].imshow(to_display(img), interpolation="nearest")
            axes[row, i].set_title(title, fontsize=7)
            axes[row, i].axis("off")
    compact(fig, left=0.02, right=0.98, bottom=0.02, top=0.92, hspace=0.3)
    return _img(figure_array(fig), "reconstructions") + _note(
        f"the first {k} test images (top) and the model's reconstructions (bottom), each scaled on its own."
    )


def _kernels(ctx: RunContext) -> str:
    from cnnlab.viz.filters import conv_layers, kernel_grid

    convs = conv_layers(need_model(ctx))
    if not convs:
        raise Skip("the model has no Conv2d layer.")
    parts = []
    for name, conv in convs[:2]:
        g = kernel_grid(conv.weight, tile=24 if name == convs[0][0] else 12)
        parts.append(_img(g.image, f"kernels {name}", f"{name}: {g.tiles} kernels {tuple(conv.weight.shape)}"))
    return "".join(parts)


def _features(ctx: RunContext) -> str:
    from cnnlab.viz.features import feature_figure, feature_stages

    b = need_data(ctx)
    stages = feature_stages(b.model, b.inputs[:1])[:4]
    label = b.data.classes[int(b.data.labels[0])] if b.data.masks is None else "sample"
    return _img(feature_figure(stages, max_maps=16, tile=32), "feature maps") + _note(
        f"test image 0 ({label}); each map scaled on its own."
    )


def _gradcam(ctx: RunContext) -> str:
    from cnnlab.viz.gradcam import grad_cam, gradcam_grid, last_spatial_layer

    b = need_data(ctx)
    if task_of(ctx) != "classification" or b.outputs.ndim != 2:
        raise Skip(f"Grad-CAM explains a class score; this {task_of(ctx)} model's output is per pixel.")
    macs = ctx.analysis.totals.macs if ctx.analysis is not None else 0
    k = min(6 if macs < 5e8 else 3 if macs < 5e9 else 2, len(b.data))  # VGG-sized models: fewer images
    layer = last_spatial_layer(b.model, b.inputs[:1])
    results = [grad_cam(b.model, b.inputs[i], layer=layer) for i in range(k)]
    picture = gradcam_grid(list(b.data.images[:k]), results, b.data.classes)
    truth = ", ".join(str(b.data.classes[int(y)]) for y in b.data.labels[:k])
    return _img(picture, "Grad-CAM") + _note(
        f"Grad-CAM at layer {layer} for the predicted class (top) and saliency max|dS/dx| (bottom) of the first "
        f"{k} test images; true classes: {truth}."
    )


_NO_ROWS = "no leaderboard rows yet: run cnnlab bench RUN --record"
# (header, row key, format): what a reader compares; the machine is said once, under the table
_BOARD_COLUMNS = (
    ("backend", "backend", "s"), ("accuracy", "accuracy", ".4f"), ("test imgs", "test_images", ",d"),
    ("input", "input_size", "s"), ("median ms", "latency_median_ms", ".3f"), ("p90 ms", "latency_p90_ms", ".3f"),
    ("batch", "batch_size", "d"), ("img/s", "throughput", ",.0f"), ("threads", "threads", "d"),
    ("params", "params", ",d"), ("MACs", "macs", ",d"), ("weights sha256", "checkpoint_sha256", "sha"),
    ("recorded", "created_at", "s"),
)  # fmt: skip


def _cell(value: object, spec: str) -> str:
    if value is None or value == "":
        return "-"
    if spec == "sha":
        return str(value)[:12]
    return str(value) if spec == "s" else format(value, spec)


def _leaderboard(ctx: RunContext) -> str:
    from cnnlab.bench.fingerprint import machine_fingerprint

    model = ctx.metrics.get("model") or ctx.meta.get("model")
    dataset = ctx.metrics.get("dataset") or ctx.meta.get("dataset")
    rows = leaderboard_rows(model, dataset, ctx.leaderboard_db)
    if rows is None:
        return _note(f"{_NO_ROWS} (this cnnlab has no cnnlab.bench.Leaderboard yet).")
    db = f" --db {shlex.quote(str(ctx.leaderboard_db))}" if ctx.leaderboard_db is not None else ""
    if not rows:
        bench = _NO_ROWS.replace("RUN", shlex.quote(str(ctx.run_dir)))
        return _note(f"{bench}{db} (none for model {model!r} on {dataset!r}).")
    here = machine_fingerprint()
    size = "x".join(str(v) for v in ctx.meta.get("input_size") or ()) or None
    shown, left_out = comparable_rows(rows, here.machine, size, ctx.test_data_sha256)
    shown.sort(key=lambda r: (r.get("accuracy") is None, -(r.get("accuracy") or 0.0), r.get("latency_median_ms") or 0))
    sha = ctx.meta.get("sha256")
    body = [
        ["this run" if sha and r.get("checkpoint_sha256") == sha else "", *(_cell(r.get(k), f) for _, k, f in
                                                                              _BOARD_COLUMNS)]
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
        parts.append(_table(["", *(h for h, _, _ in _BOARD_COLUMNS)], body, left=2))
        parts.append(_note(
            f"`cnnlab bench` rows for model {model!r} on {dataset!r} measured on this machine ({here.machine}: "
            f"{here.cpu_model}, {here.cpu_count} cores, {gpu}), at input {size or '?'}, on {data}, best accuracy "
            f"first{more}. accuracy: one pass per image over the whole test split in the backend's precision (no "
            "TTA), so it can differ from test_accuracy above; latency: one batch of `batch` images. 'this run' "
            "marks rows of this checkpoint's weights."
        ))  # fmt: skip
    else:
        parts.append(_note(
            f"no leaderboard row for model {model!r} on {dataset!r} compares with this run: none was measured on "
            f"this machine ({here.machine}) at input {size or '?'} on {data}. Add one with `cnnlab bench "
            f"{shlex.quote(str(ctx.run_dir))} --record{db}`."
        ))  # fmt: skip
    if left_out:
        listed = "; ".join(f"{len(v)} {reason}" for reason, v in left_out.items())
        args = f"--model {shlex.quote(str(model))} --dataset {shlex.quote(str(dataset))} --machine all{db}"
        parts.append(_note(
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


def _as_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    if hasattr(row, "_asdict"):
        return dict(row._asdict())
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if hasattr(row, "keys"):
        return {k: row[k] for k in row.keys()}  # noqa: SIM118  (iterating a sqlite3.Row gives values)
    return dict(vars(row))


def leaderboard_rows(
    model: object, dataset: object, db_path: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]] | None:
    """Rows of ``cnnlab.bench.Leaderboard`` for this model and dataset; None when cnnlab.bench has none.

    The leaderboard file is ``db_path`` (``--db``) or the bench default (``$CNNLAB_LEADERBOARD`` or
    the user's data folder); a missing file gives ``[]``.
    """
    try:
        bench = importlib.import_module("cnnlab.bench")
    except ModuleNotFoundError as err:
        if err.name not in ("cnnlab.bench", "cnnlab"):
            raise  # cnnlab.bench exists but one of its own imports is missing: show that
        return None
    board = getattr(bench, "Leaderboard", None)
    if board is None:
        return None
    rows = board(db_path=db_path).rows(model=model, dataset=dataset)
    return [_as_dict(r) for r in rows or []]


def _rf(ctx: RunContext) -> str:
    from cnnlab.viz.gradcam import last_spatial_layer
    from cnnlab.viz.rf import receptive_field, rf_figure

    b = need_data(ctx)
    layer = last_spatial_layer(b.model, b.inputs[:1])
    rf = receptive_field(b.model, layer, b.inputs[:1])
    head = ["layer", "unit", "theoretical RF (px)", "jump", f"ERF radius ({rf.mass:.0%} of gradient)", "ERF square"]
    row: list[object] = [
        rf.layer,
        f"{rf.unit[0]},{rf.unit[1]}",
        f"{rf.size[0]}x{rf.size[1]}",
        f"{rf.jump[0]:g}",
        f"{rf.erf_radius:.1f} px",
        f"{rf.erf_size}x{rf.erf_size}",
    ]
    return (
        _table(head, [row], left=2)
        + _img(rf_figure(b.data.images[0], rf), "receptive field")
        + _note(
            "theoretical RF from the analysis (red box) beside the effective RF: |d unit / d input| on test "
            "image 0 (Luo et al. 2016), with the radius holding the stated share of the gradient (cyan)."
        )
    )


_BUILDERS: dict[str, tuple[str, Callable[[RunContext], str]]] = {
    "summary": ("Run", _summary),
    "architecture": ("Architecture", _architecture),
    "lint": ("Design lint", _lint),
    "curves": ("Training curves", _curves),
    "confusion": ("Confusion matrix", _confusion),
    "examples": ("Examples: misclassified, segmentation overlays or reconstructions", _examples),
    "kernels": ("Kernels", _kernels),
    "features": ("Feature maps of a test image", _features),
    "gradcam": ("Grad-CAM and saliency", _gradcam),
    "rf": ("Receptive field: theoretical and effective", _rf),
    "leaderboard": ("Leaderboard", _leaderboard),
}


def _section(ctx: RunContext, key: str, on_skip: Callable[[str, str], None]) -> str:
    title, build = _BUILDERS[key]
    start = time.perf_counter()
    try:
        body = build(ctx)
    except Skip as why:
        body = _note(f"not shown: {why}")
        on_skip(title, str(why))
    except Exception as err:  # one broken picture must not cost the whole report
        body = _note(f"could not draw this section: {type(err).__name__}: {err}", "err")
        on_skip(title, f"could not be drawn ({type(err).__name__}: {err})")
    ctx.timings[key] = time.perf_counter() - start
    return f'<section id="{key}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    max_images: int = 500,
    budget_s: float = 3.0,
    leaderboard_db: str | os.PathLike[str] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> Path:
    """Write the self-contained report of a run to ``out`` (default ``run_dir/report.html``); returns the path.

    Up to ``max_images`` test images (fewer when the forward passes take more than ``budget_s``
    seconds) feed the examples, the feature maps and Grad-CAM. The leaderboard section reads
    ``leaderboard_db`` (default: the bench default). Raises FileNotFoundError when ``run_dir`` is not
    a directory and ValueError when ``out`` is a file that is not a report (it is never overwritten); every
    other problem is shown in the page instead, and ``on_skip(title, reason)`` is
    called for each section left out, so a command can say so too.
    """
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise FileNotFoundError(
            f"run directory {str(run)!r} does not exist; pass the --out folder of a `cnnlab train` run."
        )
    target = Path(out).expanduser() if out is not None else run / REPORT_NAME
    check_not_foreign(target)
    start = time.perf_counter()
    metrics, metrics_error = load_metrics(run)
    db = Path(leaderboard_db).expanduser() if leaderboard_db is not None else None
    ctx = RunContext(run, metrics, metrics_error=metrics_error, leaderboard_db=db)
    if not metrics and not metrics_error:  # not finished: the epochs it did finish are in metrics.jsonl
        ctx.history, ctx.history_error = load_history(run)
    with one_thread():
        load_run_data(ctx, max_images, budget_s)
        sections = "\n".join(_section(ctx, key, on_skip or _ignore) for key in SECTIONS)
    title = f"cnnlab report: {ctx.metrics.get('model') or ctx.meta.get('model') or run.name}"
    toc = " | ".join(f'<a href="#{key}">{_e(_BUILDERS[key][0])}</a>' for key in SECTIONS)
    page = (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta name=generator content={_GENERATOR}>"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n<h1>{_e(title)}</h1>\n"
        f'<p class="note">{_e(str(run))} - written {time.strftime("%Y-%m-%d %H:%M:%S")} in '
        f"{time.perf_counter() - start:.1f} s</p>\n<nav>{toc}</nav>\n{sections}\n</body></html>\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, target)  # readers see the old report or the new one, never half of one
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    return target


def is_report(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a page this module wrote (a report may be replaced; any other file is kept).

    >>> is_report("/nonexistent/report.html")
    False
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    # the generator tag since it was added; before that, the title every report began with
    return f"<meta name=generator content={_GENERATOR}>" in head or (
        head.startswith("<!DOCTYPE html>") and "<title>cnnlab report: " in head
    )


def check_not_foreign(target: str | os.PathLike[str], *, option: str = "out", given: bool = True) -> None:
    """Raise ValueError when ``target`` is a non-empty file that is not a cnnlab report (it would be lost).

    ``given`` is False for a default path the user did not type (the message then says so).

    >>> check_not_foreign("/nonexistent/report.html")
    """
    p = Path(target).expanduser()
    if not p.is_file() or p.stat().st_size == 0 or is_report(p):
        return
    subject = f"{option} {str(p)!r}" if given else f"the default output {str(p)!r} (no {option} given)"
    raise ValueError(
        f"{subject} already exists and is not a cnnlab report (it does not begin like a page that `cnnlab "
        f"report` writes), so it is not overwritten. Choose another file, e.g. {option} "
        f"{p.with_name(p.stem + '-report.html')}, or move that file away first."
    )


def _ignore(title: str, reason: str) -> None:
    del title, reason


def report_after_training(run_dir: str | os.PathLike[str]) -> str | None:
    """Write the report at the end of ``cnnlab train``; returns the line to print (None off rank 0).

    Only the process with ``RANK`` 0 (or no ``RANK``: a single process) writes. Any failure becomes a
    warning line: the model and metrics are already on disk and must never be lost to a picture.

    >>> report_after_training("/nonexistent/run").startswith("warning: the HTML report was not written")
    True
    """
    if os.environ.get("RANK", "0") != "0":
        return None
    start = time.perf_counter()
    try:
        path = write_report(run_dir)
    except Exception as err:  # reported; the run stays intact
        return (
            f"warning: the HTML report was not written ({type(err).__name__}: {err}); the run itself is "
            f"complete. Retry with `cnnlab report {run_dir}`."
        )
    return f"report: {path} ({time.perf_counter() - start:.1f} s)"
