"""One self-contained ``report.html`` per run: every picture embedded as a ``data:`` URI.

The page loads nothing from the network (a Content-Security-Policy forbids it), has no scripts and
works from a ``file:`` URL. Each section is built on its own: when one cannot be drawn (no test data
on this machine, a model without conv layers, ...) it says why and the rest of the report still
appears. ``cnnlab train`` writes it at the end of every run through :func:`report_after_training`.

>>> write_report("runs/fastnet")  # doctest: +SKIP
PosixPath('runs/fastnet/report.html')
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cnnlab.viz.hooks import one_thread
from cnnlab.viz.report_board import comparable_rows, leaderboard_section
from cnnlab.viz.report_html import esc, figure, note, table
from cnnlab.viz.report_summary import summary_section
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


# ------------------------------------------------------------------------------------------------ loading


# ------------------------------------------------------------------------------------------------ sections


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
    return table(head, rows, left=3) + note(
        f"input {'x'.join(str(v) for v in rep.input_shape)}; {t.macs:,} MACs = {2 * t.macs:,} FLOPs; "
        f"activations {t.activation_bytes / 1e6:.2f} MB per image."
    )


def _lint(ctx: RunContext) -> str:
    warnings = analysis_of(ctx).warnings
    if not warnings:
        return note("no design warnings.")
    rows = [[w.level, w.rule, w.layer, w.message] for w in warnings]
    return table(["level", "rule", "layer", "message"], rows, left=4)


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
    out = figure(curves_figure(history), "training curves")
    if ctx.history_error and not ctx.metrics:
        out += note(ctx.history_error, "err")
    return out + note(
        f"per epoch, from {source}: train_* are averages over the epoch's training batches while the weights changed, "
        "val_* are scored on the held-out validation images at the epoch's end."
    )


def _confusion(ctx: RunContext) -> str:
    from cnnlab.viz.curves import confusion_figure, confusion_matrix

    task = task_of(ctx)
    if task == "segmentation":
        scores = [f"{k.removeprefix('test_')} {ctx.metrics[k]:.4f}" for k in ("test_pixel_accuracy", "test_mean_iou")]
        scores = [t for t, k in zip(scores, ("test_pixel_accuracy", "test_mean_iou")) if k in ctx.metrics]
        return note(
            "segmentation run: the per-pixel results are shown as mask overlays in the next section"
            + (f" (test {', '.join(scores)})." if scores else ".")
        )
    if task == "reconstruction":
        mse = ctx.metrics.get("test_mse")
        return note(
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
    return figure(confusion_figure(cm, classes), "confusion matrix") + note(f"rows: true class; on {where}.")


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
        return figure(fig, "segmentation overlays") + note(f"the first {k} test images: truth and prediction.")
    if task == "reconstruction":
        return _reconstructions(b, k)
    if b.outputs.ndim != 2:
        raise Skip(f"examples need class scores; the model returned {tuple(b.outputs.shape)}.")
    pred = b.outputs.argmax(1)
    wrong = int((pred != b.data.labels).sum())
    fig = misclassified_figure(b.data.images, b.data.labels, pred, b.data.classes)
    return figure(fig, "misclassified") + note(
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
    return figure(figure_array(fig), "reconstructions") + note(
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
        parts.append(figure(g.image, f"kernels {name}", f"{name}: {g.tiles} kernels {tuple(conv.weight.shape)}"))
    return "".join(parts)


def _features(ctx: RunContext) -> str:
    from cnnlab.viz.features import feature_figure, feature_stages

    b = need_data(ctx)
    stages = feature_stages(b.model, b.inputs[:1])[:4]
    label = b.data.classes[int(b.data.labels[0])] if b.data.masks is None else "sample"
    return figure(feature_figure(stages, max_maps=16, tile=32), "feature maps") + note(
        f"test image 0 ({label}); each map scaled on its own."
    )


def _gradcam(ctx: RunContext) -> str:
    from cnnlab.viz.gradcam import default_cam_layer, grad_cam, gradcam_grid

    b = need_data(ctx)
    task = task_of(ctx)
    segmentation = task == "segmentation" and b.outputs.ndim == 4
    if not segmentation and (task != "classification" or b.outputs.ndim != 2):
        raise Skip(f"Grad-CAM explains a class score; this {task} model outputs no class scores.")
    macs = ctx.analysis.totals.macs if ctx.analysis is not None else 0
    k = min(6 if macs < 5e8 else 3 if macs < 5e9 else 2, len(b.data))  # VGG-sized models: fewer images
    layer = default_cam_layer(b.model, b.inputs[:1])  # segmentation: the bottleneck
    results = [grad_cam(b.model, b.inputs[i], layer=layer) for i in range(k)]
    picture = gradcam_grid(list(b.data.images[:k]), results, b.data.classes)
    if segmentation:
        return figure(picture, "Seg-Grad-CAM") + note(
            f"Seg-Grad-CAM (Vinogradova et al. 2020) at layer {layer}, the bottleneck: the gradient of the class "
            "logit summed over the pixels predicted as that class, for each image's largest predicted "
            "non-background class (top, with its share of the pixels), and saliency max|dS/dx| (bottom) of the "
            f"first {k} test images."
        )
    truth = ", ".join(str(b.data.classes[int(y)]) for y in b.data.labels[:k])
    return figure(picture, "Grad-CAM") + note(
        f"Grad-CAM at layer {layer} for the predicted class (top) and saliency max|dS/dx| (bottom) of the first "
        f"{k} test images; true classes: {truth}."
    )


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
        table(head, [row], left=2)
        + figure(rf_figure(b.data.images[0], rf), "receptive field")
        + note(
            "theoretical RF from the analysis (red box) beside the effective RF: |d unit / d input| on test "
            "image 0 (Luo et al. 2016), with the radius holding the stated share of the gradient (cyan)."
        )
    )


_BUILDERS: dict[str, tuple[str, Callable[[RunContext], str]]] = {
    "summary": ("Run", summary_section),
    "architecture": ("Architecture", _architecture),
    "lint": ("Design lint", _lint),
    "curves": ("Training curves", _curves),
    "confusion": ("Confusion matrix", _confusion),
    "examples": ("Examples: misclassified, segmentation overlays or reconstructions", _examples),
    "kernels": ("Kernels", _kernels),
    "features": ("Feature maps of a test image", _features),
    "gradcam": ("Grad-CAM and saliency", _gradcam),
    "rf": ("Receptive field: theoretical and effective", _rf),
    "leaderboard": ("Leaderboard", leaderboard_section),
}


def _section(ctx: RunContext, key: str, on_skip: Callable[[str, str], None]) -> str:
    title, build = _BUILDERS[key]
    start = time.perf_counter()
    try:
        body = build(ctx)
    except Skip as why:
        body = note(f"not shown: {why}")
        on_skip(title, str(why))
    except Exception as err:  # one broken picture must not cost the whole report
        body = note(f"could not draw this section: {type(err).__name__}: {err}", "err")
        on_skip(title, f"could not be drawn ({type(err).__name__}: {err})")
    ctx.timings[key] = time.perf_counter() - start
    return f'<section id="{key}"><h2>{esc(title)}</h2>\n{body}\n</section>'


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
    toc = " | ".join(f'<a href="#{key}">{esc(_BUILDERS[key][0])}</a>' for key in SECTIONS)
    page = (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><meta name=generator content={_GENERATOR}>"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>\n<h1>{esc(title)}</h1>\n"
        f'<p class="note">{esc(str(run))} - written {time.strftime("%Y-%m-%d %H:%M:%S")} in '
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
