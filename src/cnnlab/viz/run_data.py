"""What the report is drawn from: a run directory's metrics, model and a few evaluated test images.

Loading never raises for a damaged or partial run: what cannot be loaded is recorded as a reason
(``load_error``, ``data_error``) and each report section that needs it is skipped with that reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

HISTORY_NAME = "metrics.jsonl"  # one JSON object per finished epoch (cnnlab.train.runfiles)

__all__ = [
    "HISTORY_NAME",
    "Batch",
    "RunContext",
    "Skip",
    "analysis_of",
    "input_shape",
    "load_history",
    "load_metrics",
    "load_run_data",
    "need_data",
    "need_model",
    "read_metrics",
    "task_of",
]


@dataclass
class RunContext:
    """A run as the report sees it; filled by :func:`load_run_data`."""

    run_dir: Path
    metrics: dict[str, Any]
    metrics_error: str | None = None  # why metrics.json could not be used (None: fine or absent)
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl: epochs of a run without metrics.json
    history_error: str | None = None  # why metrics.jsonl could not be used (None: fine or absent)
    leaderboard_db: Path | None = None  # None: the bench default (cnnlab.bench.leaderboard.default_db_path)
    model: torch.nn.Module | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    load_error: str | None = None
    data: Any = None  # ImageDataset subset of the test split (first images)
    data_error: str | None = None
    inputs: torch.Tensor | None = None  # preprocessed test images (N, C, H, W)
    outputs: torch.Tensor | None = None  # model outputs on them
    test_data_sha256: str | None = None  # of the whole test split, as `cnnlab bench` records it in the leaderboard
    test_images: int | None = None  # images in the whole test split
    analysis: Any = None  # cnnlab.analysis.ModelReport, computed once for two sections
    timings: dict[str, float] = field(default_factory=dict)


def load_metrics(run: Path) -> tuple[dict[str, Any], str | None]:
    """``run/metrics.json`` as a dict, and why it could not be used (None when it could, or is absent).

    >>> load_metrics(Path("/nonexistent"))
    ({}, None)
    """
    p = run / "metrics.json"
    if not p.is_file():
        return {}, None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as err:
        return {}, f"{p} cannot be read ({err.strerror or err})."
    except ValueError as err:
        return {}, (
            f"{p} is damaged (not valid JSON: {err}); the run's numbers, curves and confusion matrix are "
            "missing. Restore the file or re-run training."
        )
    if not isinstance(data, dict):
        return {}, f"{p} is damaged: it holds a JSON {type(data).__name__} instead of an object of metrics."
    return data, None


def load_history(run: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The per-epoch records of ``run/metrics.jsonl`` and why they could not be used (None: fine or absent).

    Training rewrites this file at the end of every epoch, so it holds the curves of a run that has not
    finished (no ``metrics.json`` yet).

    >>> load_history(Path("/nonexistent"))
    ([], None)
    """
    p = run / HISTORY_NAME
    if not p.is_file():
        return [], None
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        return [], f"{p} cannot be read ({getattr(err, 'strerror', None) or err})."
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            return records, f"{p} is damaged at line {number} (not valid JSON: {err}); the curves stop before it."
        if not isinstance(record, dict):
            return records, f"{p} is damaged at line {number}: a JSON {type(record).__name__} instead of an epoch."
        records.append(record)
    return records, None


def read_metrics(run: Path) -> dict[str, Any]:
    """``run/metrics.json`` as a dict; ``{}`` when it is missing or unreadable (a run cut short).

    >>> read_metrics(Path("/nonexistent"))
    {}
    """
    return load_metrics(run)[0]


def load_run_data(ctx: RunContext, max_images: int, budget_s: float = 3.0) -> None:
    """Model, test images and outputs; any failure becomes a note in the page, never an exception."""
    from cnnlab.train.checkpoint import load_run

    try:
        loaded = load_run(ctx.run_dir)
        ctx.model, ctx.meta = loaded.model, loaded.meta
    except Exception as err:  # a damaged run still gets a report of what is there
        ctx.load_error = str(err)
        return
    try:
        _evaluate_test_images(ctx, loaded.model, max_images, budget_s)
    except Exception as err:
        ctx.data, ctx.inputs, ctx.outputs = None, None, None
        ctx.data_error = f"the test images could not be evaluated: {type(err).__name__}: {err}"


def _evaluate_test_images(ctx: RunContext, model: torch.nn.Module, max_images: int, budget_s: float) -> None:
    from cnnlab.errors import CnnlabError
    from cnnlab.train.checkpoint import preprocess

    config = ctx.meta.get("config") or ctx.metrics.get("config") or {}
    name = ctx.meta.get("dataset") or ctx.metrics.get("dataset") or config.get("data")
    if not name:
        ctx.data_error = "model.json records no dataset, so there are no test images to show."
        return
    try:
        from cnnlab.data import load_dataset

        opts = dict(ctx.meta.get("dataset_options") or config.get("data_opts") or {})
        ds = load_dataset(str(name), "test", config.get("data_dir"), **opts)
    except (CnnlabError, ValueError, OSError, TypeError) as err:
        ctx.data_error = f"test split of {name!r} unavailable: {err}"
        return
    from cnnlab.bench.runner import data_sha256
    from cnnlab.data.dataset import ImageDataset

    # the leaderboard rows of this data carry the same hash: bench scores the whole split with these targets
    targets = ds.masks if ctx.meta.get("task") == "segmentation" else ds.labels
    ctx.test_data_sha256 = None if targets is None else data_sha256(ds.images, targets)
    ctx.test_images = len(ds)
    # forward in small batches until max_images or the time budget: a big model gets fewer images
    outputs, start, n = [], time.perf_counter(), 0
    with torch.no_grad():
        while n < min(max_images, len(ds)) and (n < 8 or time.perf_counter() - start < budget_s):
            batch = ds.images[n : min(n + 64, max_images, len(ds))]
            outputs.append(model(preprocess(batch, ctx.meta)).float())
            n += len(batch)
    masks = ds.masks[:n] if ds.masks is not None else None
    ctx.data = ImageDataset(ds.images[:n], ds.labels[:n], ds.classes, ds.name, masks=masks)
    ctx.inputs = preprocess(ctx.data.images, ctx.meta)
    ctx.outputs = torch.cat(outputs)


def task_of(ctx: RunContext) -> str:
    task = ctx.meta.get("task") or ctx.metrics.get("task")
    if task:
        return str(task)
    if ctx.outputs is not None and ctx.outputs.ndim == 4:
        return "segmentation" if ctx.data is not None and ctx.data.masks is not None else "reconstruction"
    return "classification"


def input_shape(ctx: RunContext) -> tuple[int, ...]:
    size = ctx.meta.get("input_size")
    if size:
        return tuple(int(v) for v in size)
    if ctx.inputs is not None:
        return tuple(ctx.inputs.shape[1:])
    raise ValueError("model.json records no input_size and no test images are available to infer it.")


def analysis_of(ctx: RunContext) -> Any:
    if ctx.analysis is None:
        from cnnlab.analysis import analyze

        ctx.analysis = analyze(need_model(ctx), input_shape(ctx))
    return ctx.analysis


def need_model(ctx: RunContext) -> torch.nn.Module:
    if ctx.model is None:
        raise Skip(f"the model could not be loaded ({ctx.load_error}).")
    return ctx.model


@dataclass
class Batch:
    model: torch.nn.Module
    data: Any  # ImageDataset
    inputs: torch.Tensor
    outputs: torch.Tensor


def need_data(ctx: RunContext) -> Batch:
    model = need_model(ctx)
    if ctx.data is None or ctx.inputs is None or ctx.outputs is None:
        raise Skip(ctx.data_error or "no test images.")
    return Batch(model, ctx.data, ctx.inputs, ctx.outputs)


class Skip(Exception):
    """A section that cannot be drawn for a reason the reader should see (not a bug)."""
