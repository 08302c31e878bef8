"""One self-contained ``report.html`` per run: every picture embedded as a ``data:`` URI.

The page loads nothing from the network (a Content-Security-Policy forbids it), has no scripts and
works from a ``file:`` URL. Each section is built on its own: when one cannot be drawn (no test data
on this machine, a model without conv layers, ...) it says why and the rest of the report still
appears. ``cnnlab train`` calls :func:`write_report` at the end of every run.

>>> write_report("runs/fastnet")  # doctest: +SKIP
PosixPath('runs/fastnet/report.html')
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.viz.grid import png_data_uri

__all__ = ["REPORT_NAME", "SECTIONS", "write_report"]

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
    "leaderboard",
)
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


@dataclass
class _Context:
    run_dir: Path
    metrics: dict[str, Any]
    model: torch.nn.Module | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    load_error: str | None = None
    data: Any = None  # ImageDataset subset of the test split (first images)
    data_error: str | None = None
    inputs: torch.Tensor | None = None  # preprocessed test images (N, C, H, W)
    outputs: torch.Tensor | None = None  # model outputs on them
    analysis: Any = None  # cnnlab.analysis.ModelReport, computed once for two sections
    timings: dict[str, float] = field(default_factory=dict)


def _e(text: object) -> str:
    return html.escape(str(text))


def _img(picture: np.ndarray, alt: str, caption: str | None = None) -> str:
    tag = f'<img src="{png_data_uri(picture)}" alt="{_e(alt)}">'
    return f"<figure>{tag}<figcaption>{_e(caption)}</figcaption></figure>" if caption else tag


def _note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{_e(text)}</p>'


def _table(header: list[str], rows: list[list[object]], left: int = 1) -> str:
    def cells(tag: str, values: list[object]) -> str:
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{_e(v)}</{tag}>" for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', list(header))}</tr>{body}</table>"


# ------------------------------------------------------------------------------------------------ loading


def _read_metrics(run: Path) -> dict[str, Any]:
    p = run / "metrics.json"
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load(ctx: _Context, max_images: int) -> None:
    from cnnlab.errors import CnnlabError
    from cnnlab.train.checkpoint import load_run, preprocess

    try:
        loaded = load_run(ctx.run_dir)
        ctx.model, ctx.meta = loaded.model, loaded.meta
    except CnnlabError as err:
        ctx.load_error = str(err)
        return
    name = ctx.meta.get("dataset") or ctx.metrics.get("dataset")
    if not name:
        ctx.data_error = "model.json records no dataset, so there are no test images to show."
        return
    try:
        from cnnlab.data import load_dataset

        ds = load_dataset(str(name), "test", **dict(ctx.meta.get("dataset_options") or {}))
    except (CnnlabError, ValueError, OSError, TypeError) as err:
        ctx.data_error = f"test split of {name!r} unavailable: {err}"
        return
    from cnnlab.data.dataset import ImageDataset

    n = min(max_images, len(ds))
    masks = ds.masks[:n] if ds.masks is not None else None
    ctx.data = ImageDataset(ds.images[:n], ds.labels[:n], ds.classes, ds.name, masks=masks)
    ctx.inputs = preprocess(ctx.data.images, ctx.meta)
    with torch.no_grad():
        ctx.outputs = torch.cat([ctx.model(b) for b in torch.split(ctx.inputs, 256)])


def _input_shape(ctx: _Context) -> tuple[int, ...]:
    size = ctx.meta.get("input_size")
    if size:
        return tuple(int(v) for v in size)
    if ctx.inputs is not None:
        return tuple(ctx.inputs.shape[1:])
    raise ValueError("model.json records no input_size and no test images are available to infer it.")


# ------------------------------------------------------------------------------------------------ sections


def _summary(ctx: _Context) -> str:
    m = ctx.metrics
    keys = ["model", "dataset", "test_accuracy", "epochs", "train_seconds", "params", "recipe", "seed"]
    rows = [[k, m.get(k, ctx.meta.get(k))] for k in keys if m.get(k, ctx.meta.get(k)) is not None]
    extra = [[k, v] for k, v in m.items() if k not in keys and isinstance(v, (int, float, str)) and len(str(v)) < 80]
    out = _table(["field", "value"], [[k, _fmt(v)] for k, v in rows + extra[:12]], left=2)
    if not m:
        out += _note("no metrics.json in this run directory.")
    if ctx.load_error:
        out += _note(f"model not loaded: {ctx.load_error}", "err")
    return out


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _analysis(ctx: _Context) -> Any:
    if ctx.analysis is None:
        from cnnlab.analysis import analyze

        ctx.analysis = analyze(_need_model(ctx), _input_shape(ctx))
    return ctx.analysis


def _need_model(ctx: _Context) -> torch.nn.Module:
    if ctx.model is None:
        raise _Skip(f"the model could not be loaded ({ctx.load_error}).")
    return ctx.model


@dataclass
class _Batch:
    model: torch.nn.Module
    data: Any  # ImageDataset
    inputs: torch.Tensor
    outputs: torch.Tensor


def _need_data(ctx: _Context) -> _Batch:
    model = _need_model(ctx)
    if ctx.data is None or ctx.inputs is None or ctx.outputs is None:
        raise _Skip(ctx.data_error or "no test images.")
    return _Batch(model, ctx.data, ctx.inputs, ctx.outputs)


class _Skip(Exception):
    """A section that cannot be drawn for a reason the reader should see (not a bug)."""


def _architecture(ctx: _Context) -> str:
    rep = _analysis(ctx)
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


def _lint(ctx: _Context) -> str:
    warnings = _analysis(ctx).warnings
    if not warnings:
        return _note("no design warnings.")
    rows = [[w.level, w.rule, w.layer, w.message] for w in warnings]
    return _table(["level", "rule", "layer", "message"], rows, left=4)


def _curves(ctx: _Context) -> str:
    from cnnlab.viz.curves import curves_figure

    history = ctx.metrics.get("history") or []
    if not history:
        raise _Skip("metrics.json has no history to plot.")
    return _img(curves_figure(history), "training curves")


def _confusion(ctx: _Context) -> str:
    from cnnlab.viz.curves import confusion_figure, confusion_matrix

    b = _need_data(ctx)
    if b.outputs.ndim != 2:
        raise _Skip("a confusion matrix needs class scores; this model's output is per pixel.")
    pred = b.outputs.argmax(1)
    cm = confusion_matrix(b.data.labels, pred, b.outputs.shape[1])
    return _img(confusion_figure(cm, b.data.classes), "confusion matrix") + _note(
        f"on the first {len(pred)} test images."
    )


def _examples(ctx: _Context) -> str:
    from cnnlab.viz.curves import misclassified_figure, segmentation_figure

    b = _need_data(ctx)
    if b.outputs.ndim == 4 and b.data.masks is not None:
        k = min(4, len(b.data))
        fig = segmentation_figure(b.data.images[:k], b.data.masks[:k], b.outputs[:k].argmax(1))
        return _img(fig, "segmentation overlays")
    pred = b.outputs.argmax(1)
    wrong = int((pred != b.data.labels).sum())
    fig = misclassified_figure(b.data.images, b.data.labels, pred, b.data.classes)
    return _img(fig, "misclassified") + _note(
        f"{wrong} of the first {len(pred)} test images are misclassified; up to 16 are shown."
    )


def _kernels(ctx: _Context) -> str:
    from cnnlab.viz.filters import conv_layers, kernel_grid

    convs = conv_layers(_need_model(ctx))
    if not convs:
        raise _Skip("the model has no Conv2d layer.")
    parts = []
    for name, conv in convs[:2]:
        g = kernel_grid(conv.weight, tile=24 if name == convs[0][0] else 12)
        parts.append(_img(g.image, f"kernels {name}", f"{name}: {g.tiles} kernels {tuple(conv.weight.shape)}"))
    return "".join(parts)


def _features(ctx: _Context) -> str:
    from cnnlab.viz.features import feature_figure, feature_stages

    b = _need_data(ctx)
    stages = feature_stages(b.model, b.inputs[:1])[:4]
    label = b.data.classes[int(b.data.labels[0])] if b.data.masks is None else "sample"
    return _img(feature_figure(stages, max_maps=16, tile=32), "feature maps") + _note(
        f"test image 0 ({label}); each map scaled on its own."
    )


def _gradcam(ctx: _Context) -> str:
    from cnnlab.viz.gradcam import grad_cam, last_spatial_layer
    from cnnlab.viz.grid import compact, figure_array, new_figure
    from cnnlab.viz.images import to_display

    b = _need_data(ctx)
    if b.outputs.ndim != 2:
        raise _Skip("Grad-CAM needs class scores; this model's output is per pixel.")
    k = min(4, len(b.data))
    fig = new_figure(2.0 * k, 4.2)
    axes = np.asarray(fig.subplots(2, k)).reshape(2, k)  # type: ignore[attr-defined]
    layer = last_spatial_layer(b.model, b.inputs[:1])
    for i in range(k):
        res = grad_cam(b.model, b.inputs[i], layer=layer)
        layer = res.layer
        shown = to_display(b.data.images[i]).astype(np.float64) / 255
        axes[0, i].imshow(shown, interpolation="nearest")
        axes[0, i].imshow(res.cam.numpy(), cmap="jet", alpha=0.45)
        axes[0, i].set_title(f"{b.data.classes[res.target]} ({float(res.probs[res.target]):.0%})"[:24], fontsize=7)
        axes[1, i].imshow(res.saliency.numpy(), cmap="gray")
        axes[1, i].set_title("saliency", fontsize=7)
        for ax in axes[:, i]:
            ax.axis("off")
    compact(fig, left=0.02, right=0.98, bottom=0.02, top=0.92, hspace=0.3)
    return _img(figure_array(fig), "Grad-CAM") + _note(f"Grad-CAM at layer {layer} for the predicted class.")


def _leaderboard(ctx: _Context) -> str:
    model = ctx.metrics.get("model") or ctx.meta.get("model")
    dataset = ctx.metrics.get("dataset") or ctx.meta.get("dataset")
    try:
        import cnnlab.bench as bench
    except ImportError:
        return _note("no leaderboard rows (cnnlab.bench is not available).")
    rows = _leaderboard_rows(bench, model, dataset)
    if not rows:
        return _note(f"no leaderboard rows for model {model!r} on {dataset!r}.")
    header = list(rows[0])
    return _table(header, [[_fmt(r.get(h)) for h in header] for r in rows[:20]], left=1)


def _leaderboard_rows(bench: Any, model: object, dataset: object) -> list[dict[str, Any]]:
    cls = getattr(bench, "Leaderboard", None)
    if cls is None:
        return []
    db = os.environ.get("CNNLAB_LEADERBOARD") or getattr(bench, "DEFAULT_DB", None)
    if db is None:
        default = getattr(bench, "default_db_path", None)
        db = default() if callable(default) else None
    if db is None or not Path(str(db)).exists():
        return []
    rows: list[dict[str, Any]] = cls(db).rows(model=model, dataset=dataset)
    return rows


_BUILDERS: dict[str, tuple[str, Callable[[_Context], str]]] = {
    "summary": ("Run", _summary),
    "architecture": ("Architecture", _architecture),
    "lint": ("Design lint", _lint),
    "curves": ("Training curves", _curves),
    "confusion": ("Confusion matrix", _confusion),
    "examples": ("Misclassified examples / segmentation", _examples),
    "kernels": ("Kernels", _kernels),
    "features": ("Feature maps of a test image", _features),
    "gradcam": ("Grad-CAM and saliency", _gradcam),
    "leaderboard": ("Leaderboard", _leaderboard),
}


def _section(ctx: _Context, key: str) -> str:
    title, build = _BUILDERS[key]
    start = time.perf_counter()
    try:
        body = build(ctx)
    except _Skip as why:
        body = _note(f"not shown: {why}")
    except Exception as err:  # one broken picture must not cost the whole report
        body = _note(f"could not draw this section: {type(err).__name__}: {err}", "err")
    ctx.timings[key] = time.perf_counter() - start
    return f'<section id="{key}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def write_report(run_dir: str | os.PathLike[str], *, max_images: int = 500) -> Path:
    """Write ``run_dir/report.html`` (self-contained) and return its path.

    ``max_images`` test images are used for the confusion matrix and the examples. Raises
    FileNotFoundError when ``run_dir`` is not a directory; every other problem is shown in the page.
    """
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise FileNotFoundError(
            f"run directory {str(run)!r} does not exist; pass the --out folder of a `cnnlab train` run."
        )
    ctx = _Context(run, _read_metrics(run))
    _load(ctx, max_images)
    title = f"cnnlab report: {ctx.metrics.get('model') or ctx.meta.get('model') or run.name}"
    sections = "\n".join(_section(ctx, key) for key in SECTIONS)
    page = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n<h1>{_e(title)}</h1>\n"
        f'<p class="note">{_e(str(run))} - written {time.strftime("%Y-%m-%d %H:%M:%S")}</p>\n'
        f"{sections}\n</body></html>\n"
    )
    out = run / REPORT_NAME
    tmp = run / f".{REPORT_NAME}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
