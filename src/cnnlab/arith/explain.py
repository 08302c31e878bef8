"""Shapes, parameters and receptive fields of a layer stack, with every formula filled in.

The stack is written in the small language of :mod:`cnnlab.arith._spec` (``"conv f=5 c=8; pool f=2;
fc 10"``) and the input as ``H,W,C`` (``32,32,3``, the seeds' ``32x32x3``) or, with ``layout="chw"``,
PyTorch's ``C,H,W``. Each ``explain_*`` function returns ``{"output": ..., "steps": [...], "lines":
[...]}``: one JSON-serialisable step per layer and the same for people as text lines.

>>> d = explain_params("conv f=5 c=8; pool f=2 s=2; conv f=5 c=16; pool f=2 s=2; fc 120; fc 84; fc 10",
...                    "32,32,3")
>>> d["output"], [s["params"] for s in d["steps"]]
(62958, [608, 0, 3216, 0, 48120, 10164, 850])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.arith._norm import axis_names
from cnnlab.arith._spec import Layer, parse_input, parse_spec, shape_list
from cnnlab.arith._steps import LayerStep, step_layer
from cnnlab.arith.receptive import RF, rf_input

__all__ = ["compare_rf", "explain_params", "explain_rf", "explain_shape", "parse_input", "parse_spec"]


@dataclass
class _Walk:
    steps: list[LayerStep]
    input_shape: list[int]
    layout: str
    rf_lost: str = ""

    def need_rf(self) -> None:
        """Raise the reason the receptive field was not followed to the end, if it was not."""
        if self.rf_lost:
            raise ValueError(self.rf_lost)


def _walk(spec: str, input_shape: str, layout: str) -> _Walk:
    layers: list[Layer] = parse_spec(spec)
    spatial, channels = parse_input(input_shape, layout)
    state: tuple[tuple[int, ...] | None, int, RF] = (spatial, channels, rf_input(len(spatial)))
    steps = []
    flat_map: tuple[int, ...] | None = None  # the map a flatten made a vector of, until an fc reads it whole
    lost = ""  # why the receptive field is not followed past some layer (shapes and counts go on)
    for number, layer in enumerate(layers, start=1):
        try:
            step = step_layer(layer, state, layout, flat_map)
        except ValueError as err:
            # the arithmetic says what is wrong; in a stack of many layers, say where too
            where = "" if f"'{layer.text}'" in str(err) else f"layer {number} ({layer.name}: '{layer.text}'): "
            raise ValueError(f"{where}{err}") from None
        lost = step.rf_lost = lost or step.rf_lost
        steps.append(step)
        state = (step.spatial, step.channels, step.rf)
        if step.kind == "flatten" and step.in_spatial is not None:
            flat_map = step.in_spatial
        elif step.kind == "fc":
            flat_map = None
    return _Walk(steps=steps, input_shape=shape_list(spatial, channels, layout), layout=layout, rf_lost=lost)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*r).rstrip() for r in rows)]


def _in_text(walk: _Walk, *, count: bool = True) -> str:
    axes = ",".join(axis_names(len(walk.input_shape) - 1))  # L, H,W or D,H,W
    order = f"C,{axes}" if walk.layout == "chw" else f"{axes},C"
    values = math.prod(walk.input_shape)
    shape = f"input {'x'.join(str(v) for v in walk.input_shape)} ({order})"
    return f"{shape} = {values:,} value{'s' if values != 1 else ''}" if count else shape


def explain_shape(spec: str, input_shape: str, *, layout: str = "hwc") -> dict[str, Any]:
    """Output shape of every layer with the size formula and its numbers.

    >>> explain_shape("conv f=11 s=4 c=96; pool f=3 s=2", "227,227,3")["output"]
    [27, 27, 96]
    """
    walk = _walk(spec, input_shape, layout)
    lines = [f"{_in_text(walk)}; output size per axis: floor((n + 2p - d(k-1) - 1)/s) + 1"]
    for st in walk.steps:
        count = f"{st.activations:,} activation{'s' if st.activations != 1 else ''}"
        lines.append(f"{st.name}: {st.layer.text}  ->  {st.shape_text}  ({count})")
        lines += [f"    {f}" for f in st.size_formulas]
        lines += [f"    note: {note}" for note in (*st.size_notes, st.dilation_note) if note]
    last = walk.steps[-1]
    lines.append(f"output: {last.shape_text}")
    return {"output": last.shape, "steps": [s.to_dict() for s in walk.steps], "lines": lines}


def _diagnose(st: LayerStep, total: int) -> str:
    """Why a claimed parameter count differs from the real one, when a simple cause explains it."""
    claimed, out = st.layer.claimed_params or 0, st.channels
    bias = out if st.bias else 0
    if st.kind == "fc" and (claimed - bias) % out == 0 and (claimed - bias) // out != st.in_features:
        fed = (claimed - bias) // out
        missing = st.in_features * fed + fed
        return (
            f"{claimed:,} = {fed}*{out} + {bias} is what an fc layer fed by {fed} units has, but {st.name} "
            f"follows {st.in_features} units. The table leaves out a layer of {fed} units before {st.name} "
            f"({st.in_features}*{fed} + {fed} = {missing:,} parameters); with it the network has "
            f"{total - st.params + claimed + missing:,} parameters."
        )
    if st.kind in ("conv", "convT") and claimed == st.params - bias:
        return f"{claimed:,} is the count without the {out} biases."
    return f"No single change explains {claimed:,}; recheck the kernel, channels and bias of {st.name}."


def _claim_lines(walk: _Walk, total: int, claimed_total: int | None) -> tuple[list[str], list[str]]:
    problems, lines = [], []
    claimed_rows = [s for s in walk.steps if s.layer.claimed_params is not None]
    for st in claimed_rows:
        if st.layer.claimed_params != st.params:
            problems.append(
                f"{st.name} ({st.layer.text}): the table says {st.layer.claimed_params:,} but the layer has "
                f"{st.params_formula} = {st.params:,}. {_diagnose(st, total)}"
            )
    unclaimed = [s for s in walk.steps if s.layer.claimed_params is None and s.params]
    if claimed_rows and unclaimed:
        listed = ", ".join(f"{s.name} ({s.params:,})" for s in unclaimed)
        problems.append(
            f"layers with parameters but no claimed count (the table may leave them out): {listed}."
        )
    if claimed_total is not None:
        row_sum = sum(s.layer.claimed_params or 0 for s in claimed_rows)
        if claimed_total == total:
            lines.append(f"claimed total {claimed_total:,}: correct")
        else:
            wrong_rows = any(s.layer.claimed_params != s.params for s in claimed_rows)
            cause = "the rows themselves are wrong" if wrong_rows else "the table leaves out layers"
            rows_note = (
                f" The table's rows do sum to {row_sum:,}, so the addition is fine; {cause}, see below."
                if claimed_rows and row_sum == claimed_total
                else ""
            )
            direction = "more" if claimed_total > total else "less"
            problems.insert(
                0,
                f"the claimed total {claimed_total:,} is {abs(claimed_total - total):,} {direction} than the "
                f"layers' real total {total:,}.{rows_note}",
            )
    if claimed_rows and not problems:
        lines.append("every claimed row is correct")
    return problems, lines


def explain_params(
    spec: str, input_shape: str, *, layout: str = "hwc", claimed_total: int | None = None
) -> dict[str, Any]:
    """Parameters of every layer, the total, and a check of any claimed counts (``params=N`` per layer,
    ``claimed_total`` for the table's total) with a line saying where a table goes wrong.

    >>> d = explain_params("conv f=5 c=8 params=608; fc 10 params=850", "32,32,3", claimed_total=1458)
    >>> d["output"], len(d["problems"])
    (63338, 2)
    """
    walk = _walk(spec, input_shape, layout)
    total = sum(s.params for s in walk.steps)
    rows = [
        [
            st.name,
            st.layer.text,
            st.shape_text,
            f"{st.activations:,}",
            f"{st.params_formula} = {st.params:,}" if st.params else "0",
            "" if st.layer.claimed_params is None else f"{st.layer.claimed_params:,}",
            f"{st.macs:,}",
        ]
        for st in walk.steps
    ]
    show_claims = any(st.layer.claimed_params is not None for st in walk.steps)
    header = ["layer", "spec", "shape", "activations", "parameters", *(["claimed"] if show_claims else []), "MACs"]
    lines = [_in_text(walk), *_table(header, [r if show_claims else r[:-2] + r[-1:] for r in rows])]
    lines.append(f"total parameters: {total:,}")
    macs = sum(st.macs for st in walk.steps)
    lines.append(f"total MACs: {macs:,} multiply-adds per image (conv and fc layers; FLOPs = 2 x MACs = {2 * macs:,})")
    problems, ok_lines = _claim_lines(walk, total, claimed_total)
    lines += ok_lines + [f"WRONG: {p}" for p in problems]
    return {
        "output": total,
        "steps": [s.to_dict() for s in walk.steps],
        "lines": lines,
        "claimed_total": claimed_total,
        "problems": problems,
    }


def _axes(values: Sequence[float]) -> str:
    # "32" when every axis agrees, else "1x7"
    texts = [f"{v:.12g}" for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def explain_rf(spec: str, input_shape: str, *, layout: str = "hwc") -> dict[str, Any]:
    """Receptive-field table (n, jump j, RF, start) with the recurrence filled in per layer.

    >>> explain_rf("conv f=3 p=1; conv f=3 p=1; pool f=2", "32,32,3")["output"]["size"]
    [6, 6]
    """
    walk = _walk(spec, input_shape, layout)
    walk.need_rf()
    spatial0 = walk.input_shape[1:] if layout == "chw" else walk.input_shape[:-1]
    ones = [1] * len(spatial0)
    rows = [["0", "input", _axes(spatial0), _axes(ones), _axes(ones), _axes([0] * len(spatial0))]]
    for i, st in enumerate(walk.steps, start=1):
        n = "-" if st.spatial is None else _axes(st.spatial)
        rows.append([str(i), st.name, n, _axes(st.rf.jump), _axes(st.rf.size), _axes(st.rf.start)])
    names = "x".join(axis_names(walk.steps[-1].rf.ndim))
    lines = [
        f"{_in_text(walk)}; one value when all axes agree, else {names}",
        "RF_out = RF_in + (k_eff-1)*j_in,  j_out = j_in*s,  start_out = start_in + ((k_eff-1)/2 - p)*j_in",
        *_table(["#", "name", "n", "j", "RF", "start"], rows),
    ]
    for st in walk.steps:
        lines += [f"{st.name}: {f}" for f in st.rf_formulas]
        lines += [f"{st.name}: {st.dilation_note}"] if st.dilation_note else []
    return {"output": walk.steps[-1].rf.to_dict(), "steps": [s.to_dict() for s in walk.steps], "lines": lines}


def _c2_coefficient(walk: _Walk, c: int) -> int | None:
    # weights of a stack of C->C convolutions are (sum of kernel volumes) * C^2
    convs = [s for s in walk.steps if s.kind == "conv"]
    if not convs or any(s.in_channels != c or s.channels != c or s.groups != 1 for s in convs):
        return None
    return sum(s.kernel_volume for s in convs)


# input side of both stacks of compare_rf when no input is given: a common image size on which a
# stack of a dozen 3x3 convolutions, or five stride-2 stages, still fits
COMPARE_SIZE = 224


def _compare_input(channels: int | None, input_shape: str | None, layout: str) -> tuple[str, str, int]:
    """(input text, layout, C) for compare_rf: the given input, or COMPARE_SIZE x COMPARE_SIZE x C."""
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ValueError(
            f"channels must be a positive whole number (C in and out of every conv); received "
            f"channels={channels!r}. Use e.g. channels=64."
        )
    if input_shape is None:
        c = 64 if channels is None else channels
        return f"{COMPARE_SIZE},{COMPARE_SIZE},{c}", "hwc", c
    _, c = parse_input(input_shape, layout)
    if channels is not None and channels != c:
        raise ValueError(
            f"channels={channels} disagrees with the input {input_shape!r}, which has {c} channels. "
            "Give the channels once: in the input shape, or as channels without an input."
        )
    return input_shape, layout, c


def _weights_verdict(a: int, b: int) -> str:
    # A/B as a ratio, or which stack has no weights (pooling only)
    if a == 0 and b == 0:
        return "neither A nor B has weights"
    if b == 0:
        return f"B has no weights (A has {a:,})"
    if a == b:
        return f"both use {a:,} weights"
    return f"A uses {a / b:.2f}x the weights of B"


def _rf_verdict(a: list[int], b: list[int]) -> tuple[str, str]:
    """Which stack sees more ("A", "B", "same", or "neither" when each is larger along some axis)."""
    ta, tb = "x".join(map(str, a)), "x".join(map(str, b))
    if a == b:
        return "same", "A and B have the same receptive field"
    if all(x >= y for x, y in zip(a, b)):
        return "A", f"A's receptive field is larger ({ta} against {tb})"
    if all(x <= y for x, y in zip(a, b)):
        return "B", f"B's receptive field is larger ({tb} against {ta})"
    return "neither", f"A's receptive field ({ta}) and B's ({tb}) differ, each larger along some axis"


def _pools(walk: _Walk) -> list[str]:
    return [s.name for s in walk.steps if s.kind in ("maxpool", "avgpool")]


def _pooling_note(label: str, walks: dict[str, _Walk]) -> str:
    # seed 002 says pooling decreases the receptive field; the recurrence says otherwise. Said only where
    # the larger stack has more pooling than the other (an equal pool in both explains no difference).
    other = "B" if label == "A" else "A"
    pools = _pools(walks[label])
    if len(pools) <= len(_pools(walks[other])):
        return ""
    one = len(pools) == 1
    later = walks[label].steps[-1].name not in pools  # a layer after the last pool, whose reach grows
    return (
        f" Pooling enlarges the receptive field, it never shrinks it: {label}'s {', '.join(pools)} "
        f"add{'s' if one else ''} (k-1)*j to it and multipl{'ies' if one else 'y'} the jump j by the stride"
        + (", so every later kernel reaches further." if later else ".")
    )


def _depth_note(walks: dict[str, _Walk]) -> str:
    # same field, different weights: the deeper stack (more convolutions) has more non-linearities
    convs = {label: sum(st.kind == "conv" for st in walk.steps) for label, walk in walks.items()}
    if convs["A"] == convs["B"] or not min(convs.values()):
        return ""
    deeper, shallower = ("A", "B") if convs["A"] > convs["B"] else ("B", "A")
    return (
        f" {deeper} stacks {convs[deeper]} convolutions against {convs[shallower]}, so with a ReLU after each "
        "it has more non-linearities."
    )


def compare_rf(
    spec_a: str, spec_b: str, *, channels: int | None = None, input_shape: str | None = None, layout: str = "hwc"
) -> dict[str, Any]:
    """Receptive field and parameters of two stacks side by side (C channels in and out).

    Both stacks run on ``input_shape`` (``H,W,C``, or ``C,H,W`` with ``layout="chw"``); without it on
    COMPARE_SIZE x COMPARE_SIZE x ``channels`` (default 64), which the first line states. Two stacked
    3x3 convolutions see 5x5, like one 5x5, with 2*9C^2 instead of 25C^2 weights:

    >>> d = compare_rf("conv f=3; conv f=3", "conv f=5", channels=64)
    >>> [o["rf"]["size"] for o in d["output"]], [o["weights"] for o in d["output"]]
    ([[5, 5], [5, 5]], [73728, 102400])
    """
    shape, layout, c = _compare_input(channels, input_shape, layout)
    outputs: list[dict[str, Any]] = []
    lines: list[str] = []
    walks: dict[str, _Walk] = {}
    for label, spec in (("A", spec_a), ("B", spec_b)):
        walk = walks[label] = _walk(spec, shape, layout)
        walk.need_rf()
        if not lines:
            default = " (the default size; give --input for another)" if input_shape is None else ""
            lines.append(f"both stacks run on {_in_text(walk, count=False)}{default}")
        params = sum(s.params for s in walk.steps)
        weights = sum(s.weights for s in walk.steps)
        coef = _c2_coefficient(walk, c)
        rf = walk.steps[-1].rf
        terms = [f"{s.kernel_volume}C^2" for s in walk.steps if s.kind == "conv"]
        sym = ""
        if coef is not None:
            sym = f" = {' + '.join(terms)}" + (f" = {coef}C^2" if len(terms) > 1 else "")
        outputs.append(
            {"spec": spec, "rf": rf.to_dict(), "params": params, "weights": weights, "c2_coefficient": coef}
        )
        lines.append(
            f"{label}: {spec}: receptive field {'x'.join(map(str, rf.size))}, weights {weights:,}{sym} "
            f"(C={c}), parameters with biases {params:,}"
        )
        for st in walk.steps:
            lines += [f"    {st.name}: {f}" for f in st.rf_formulas]
            lines += [f"    {st.name}: {st.dilation_note}"] if st.dilation_note else []
        input_list = walk.input_shape
    a, b = outputs
    larger, verdict = _rf_verdict(a["rf"]["size"], b["rf"]["size"])
    same = larger == "same"
    lines.append(
        f"{verdict}; {_weights_verdict(a['weights'], b['weights'])}."
        + (_depth_note(walks) if same else "")
        + (_pooling_note(larger, walks) if larger in walks else "")
    )
    return {
        "output": outputs,
        "input": input_list,
        "layout": layout,
        "larger_rf": larger,
        "steps": [],
        "lines": lines,
    }
