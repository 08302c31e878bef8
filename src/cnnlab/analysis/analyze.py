"""``analyze(model, input_shape)``: capture the graph once, then count, measure and lint it."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch.nn as nn

from cnnlab.analysis.capture import Graph, capture
from cnnlab.analysis.counts import node_connections, node_macs, node_params, unused_params
from cnnlab.analysis.lint import run_rules
from cnnlab.analysis.memory import Memory, measure
from cnnlab.analysis.receptive import RFState, propagate
from cnnlab.analysis.report import LayerRow, LintWarning, ModelReport, Totals
from cnnlab.errors import AnalysisError


def check_input_shape(input_shape: Sequence[int] | str) -> tuple[int, ...]:
    """Validate ``(C, H, W)`` (or ``(C, L)`` / ``(C, D, H, W)``); a string like "3,224,224" is parsed.

    >>> check_input_shape("3,32,32")
    (3, 32, 32)
    """
    if isinstance(input_shape, str):
        text = input_shape
        parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
        try:
            input_shape = [int(p) for p in parts]
        except ValueError:
            input_shape = []
        if not input_shape:
            raise ValueError(f"input shape must be integers C,H,W (for example 3,224,224); received {text!r}.")
    shape = tuple(_as_int(v) for v in input_shape)
    if not 2 <= len(shape) <= 4 or not all(v is not None and v > 0 for v in shape):
        raise ValueError(
            f"input shape must be (C, H, W) - or (C, L), (C, D, H, W) - with positive integers, without "
            f"the batch axis; received {tuple(input_shape)!r}. Use for example (3, 224, 224)."
        )
    return tuple(v for v in shape if v is not None)


def _as_int(value: object) -> int | None:
    """Any int-like value (``int``, ``np.int64``, a 0-d integer tensor) as an int; None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def analyze(
    model: nn.Module, input_shape: Sequence[int] | str, *, name: str | None = None, lint: bool = True
) -> ModelReport:
    """Shapes, params, MACs, activation memory, receptive fields and design warnings of ``model``.

    The model is copied to the meta device (no weight data copied, no compute); ``input_shape`` is
    one sample without the batch axis, the report is for batch 1.

    >>> import torch.nn as nn
    >>> report = analyze(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(10)), (3, 8, 8))
    >>> report.layer("2").input_shapes, report.layer("2").params  # a lazy layer, sized on the meta copy
    ([(1, 288)], 2890)
    >>> analyze(nn.Sequential(nn.Conv2d(3, 8, 3)), (3, 2, 2))
    Traceback (most recent call last):
    ...
    cnnlab.errors.AnalysisError: layer '0' (Conv2d) fails on input shape(s) (1, 3, 2, 2): ...
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module; received {type(model).__name__} ({model!r:.60}). "
            "Wrap a function in a module, for example with nn.Sequential, or pass the model itself."
        )
    shape = check_input_shape(input_shape)
    try:
        graph = capture(model, shape)
    except AnalysisError as err:
        if len(shape) >= 3 and shape[0] == 1 and _captures(model, shape[1:]):
            # (1, C, H, W): the batch axis was included, and the shape without it works
            raise AnalysisError(
                f"{err} Note: input_shape is one sample without the batch axis; {shape} looks like it "
                f"includes one, try {shape[1:]}."
            ) from err
        raise
    memory = measure(graph)
    rows = _rows(graph, memory)
    states, rf_warnings = propagate(graph)
    for row, state in zip(rows, states):
        _set_rf(row, state)
    extra, extra_trainable = unused_params(graph)
    if extra:
        rows.append(LayerRow("(unused parameters)", "-", "unused", [], (), extra, extra_trainable))
    totals = _totals(rows, memory.peak_inference_bytes)
    types = {n: type(m).__name__ for n, m in graph.model.named_modules()} if graph.model is not None else {}
    report = ModelReport(
        name or type(model).__name__, shape, rows, totals, capture=graph.path, module_types=types
    )
    warnings: list[LintWarning] = [LintWarning("capture", "info", "-", note) for note in graph.notes]
    if extra:
        warnings.append(
            LintWarning(
                "unused-params",
                "info",
                "(unused parameters)",
                f"{extra:,} parameters are never used by forward(); they still count in sum(p.numel())",
            )
        )
    if any(r.kind == "attention" for r in rows):
        warnings.append(
            LintWarning(
                "capture",
                "info",
                "-",
                "nn.MultiheadAttention MACs = q/k/v/output projections + QK^T + AV over all heads "
                "(softmax, scaling and masks not counted)",
            )
        )
    warnings.extend(rf_warnings)
    if lint:
        warnings.extend(run_rules(graph, report, states))
    report.warnings = warnings
    return report


def _captures(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``model`` runs at ``shape``: the batch-axis hint is only given when it would work."""
    try:
        capture(model, shape)
    except Exception:  # any failure: the hint would be wrong
        return False
    return True


def _rows(graph: Graph, memory: Memory) -> list[LayerRow]:
    params = node_params(graph)
    rows = []
    for i, node in enumerate(graph.nodes):
        macs = node_macs(node)
        rows.append(
            LayerRow(
                name=node.name,
                type=node.type,
                kind=node.geometry.kind,
                input_shapes=node.input_shapes,
                output_shape=node.output_shape,
                params=params[i][0],
                trainable_params=params[i][1],
                macs=macs,
                connections=node_connections(node, macs),
                activation_bytes=memory.output_bytes[i],
                saved_bytes=memory.saved_bytes[i],
                depth=node.name.count(".") if i else 0,
            )
        )
    return rows


def _set_rf(row: LayerRow, state: RFState | None) -> None:
    if state is None:
        return
    row.rf = state.hi
    row.rf_min = state.lo.size


def _totals(rows: list[LayerRow], peak: int) -> Totals:
    return Totals(
        params=sum(r.params for r in rows),
        trainable_params=sum(r.trainable_params for r in rows),
        macs=sum(r.macs for r in rows),
        connections=sum(r.connections for r in rows),
        activation_bytes=sum(r.activation_bytes for r in rows),
        saved_bytes=sum(r.saved_bytes for r in rows),
        peak_inference_bytes=peak,
    )
