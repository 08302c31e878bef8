"""One layer of an explained stack: its output shape, parameters, MACs and receptive field, with the
formulas written out with the numbers filled in (used by :mod:`cnnlab.arith.explain`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnlab.arith._norm import Pair, axis_names, ceil_div
from cnnlab.arith._spec import (
    Layer,
    axis_ints,
    flag,
    fmt_shape,
    padding_opt,
    positive,
    shape_list,
    volume,
)
from cnnlab.arith._support import PeriodTooLong
from cnnlab.arith.notes import dilation_note, floor_notes, same_notes
from cnnlab.arith.params import (
    batchnorm_params,
    conv_macs,
    conv_params,
    conv_transpose_macs,
    conv_transpose_params,
    linear_macs,
    linear_params,
)
from cnnlab.arith.receptive import (
    RF,
    UpsampleMode,
    rf_conv,
    rf_conv_transpose,
    rf_input,
    rf_upsample,
    rf_whole_map,
)
from cnnlab.arith.sizes import conv_out, conv_transpose_out, effective_kernel, pool_out, resolve_padding

State = tuple[tuple[int, ...] | None, int, RF]


@dataclass
class LayerStep:
    """Everything computed for one layer; ``to_dict()`` is its JSON step."""

    layer: Layer
    kind: str
    layout: str
    in_spatial: tuple[int, ...] | None
    in_channels: int
    spatial: tuple[int, ...] | None
    channels: int
    rf: RF
    params: int = 0
    params_formula: str = "0"
    bias: bool = False
    groups: int = 1
    kernel_volume: int = 0
    macs: int = 0
    size_formulas: list[str] = field(default_factory=list)
    rf_formulas: list[str] = field(default_factory=list)
    # why the size differs from the textbook (W + 2P - F)/S + 1: a floor, the 'same' rule
    size_notes: list[str] = field(default_factory=list)
    # "dilation 2: a 3x3 kernel covers 5x5 ...", or "" without dilation
    dilation_note: str = ""
    # why the receptive field is not followed from here on (a stride of 10^8 makes its pattern too long to
    # walk): ``rf`` is then a stand-in that keeps the shapes and counts going, and ``to_dict`` gives None
    rf_lost: str = ""

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def in_features(self) -> int:
        return volume(self.in_spatial, self.in_channels)

    @property
    def weights(self) -> int:
        return self.params - (self.channels if self.bias else 0)

    @property
    def activations(self) -> int:
        return volume(self.spatial, self.channels)

    @property
    def shape(self) -> list[int]:
        return shape_list(self.spatial, self.channels, self.layout)

    @property
    def shape_text(self) -> str:
        return fmt_shape(self.spatial, self.channels, self.layout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer": self.layer.text,
            "kind": self.kind,
            "input": shape_list(self.in_spatial, self.in_channels, self.layout),
            "output": self.shape,
            "activations": self.activations,
            "params": self.params,
            "params_formula": self.params_formula,
            "claimed_params": self.layer.claimed_params,
            "macs": self.macs,
            "size_formulas": self.size_formulas,
            "rf": None if self.rf_lost else self.rf.to_dict(),
            "rf_formulas": self.rf_formulas,
            "size_notes": self.size_notes,
            "dilation_note": self.dilation_note or None,
        }


def _merge(per_axis: list[tuple[str, str]]) -> list[str]:
    """``[("H", x), ("W", x)]`` -> ``["H, W: x"]``: one line per distinct formula."""
    order: dict[str, list[str]] = {}
    for axis, body in per_axis:
        order.setdefault(body, []).append(axis)
    return [f"{', '.join(axes)}: {body}" for body, axes in order.items()]


def _size_body(n: int, k: int, s: int, pair: Pair, d: int, out: int, ceil_mode: bool) -> str:
    pad = f"2*{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}+{pair[1]}"
    inner = f"{n} + {pad} - {k}" if d == 1 else f"{n} + {pad} - {d}*({k}-1) - 1"
    op = "ceil" if ceil_mode else "floor"
    body = f"{op}(({inner})/{s}) + 1 = {out}"
    span = n + pair[0] + pair[1] - (d * (k - 1) + 1)
    if ceil_mode and ceil_div(span, s) + 1 != out:
        body += " (the last window would start in the right padding, so it is dropped)"
    return body


def _size_lines(
    n: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    pairs: tuple[Pair, ...],
    d: tuple[int, ...],
    out: tuple[int, ...],
    ceil_mode: bool,
) -> list[str]:
    names = axis_names(len(n))
    return _merge(
        [(names[i], _size_body(n[i], k[i], s[i], pairs[i], d[i], out[i], ceil_mode)) for i in range(len(n))]
    )


def _windowed_notes(
    step: LayerStep, p: object, k: tuple[int, ...], s: tuple[int, ...], pairs: tuple[Pair, ...],
    d: tuple[int, ...], ceil_mode: bool,
) -> None:
    """Fill ``step``'s size notes (floor, 'same') and dilation note for a conv or pooling layer."""
    n = step.in_spatial or ()
    names = axis_names(len(n))
    step.size_notes = [] if ceil_mode else floor_notes(names, n, k, s, pairs, d)
    if p == "same":
        step.size_notes += same_notes(names, n, k, s, d, pooling=step.kind in ("maxpool", "avgpool"))
    step.dilation_note = dilation_note(k, d)


def _rf_bodies(
    rf_in: RF, rf_out: RF, ke: tuple[int, ...], s: tuple[int, ...], lefts: tuple[int, ...]
) -> list[str]:
    out = []
    for i, axis in enumerate(axis_names(rf_in.ndim)):
        j, size = rf_in.jump[i], rf_in.size[i]
        body = (
            f"RF = {size} + ({ke[i]}-1)*{j:.12g} = {rf_out.size[i]}, j = {j:.12g}*{s[i]} = {rf_out.jump[i]:.12g}, "
            f"start = {rf_in.start[i]:.12g} + (({ke[i]}-1)/2 - {lefts[i]})*{j:.12g} = {rf_out.start[i]:.12g}"
        )
        if not math.isclose(size + (ke[i] - 1) * j, rf_out.size[i]):
            body = (
                f"RF = {rf_out.size[i]} (counted exactly: with the fractional jump {j:.12g} the formula "
                f"{size} + ({ke[i]}-1)*{j:.12g} is only approximate), j = {rf_out.jump[i]:.12g}, "
                f"start = {rf_out.start[i]:.12g}"
            )
        out.append((axis, body))
    return _merge(out)


def _need_map(layer: Layer, spatial: tuple[int, ...] | None) -> tuple[int, ...]:
    if spatial is None:
        raise ValueError(
            f"layer '{layer.text}' needs a feature map, but the layer before it produced a flat vector "
            "(after fc/flatten). Move it before the fc layers."
        )
    return spatial


def _conv(layer: Layer, state: State, layout: str) -> LayerStep:
    spatial, cin, rf = state
    n = _need_map(layer, spatial)
    nd = len(n)
    k, s, d = axis_ints(layer, "f", nd, None), axis_ints(layer, "s", nd, 1), axis_ints(layer, "d", nd, 1)
    p = padding_opt(layer, nd)
    cout, g, bias = positive(layer, "c", cin), positive(layer, "g", 1), flag(layer, "bias", True)
    params = conv_params(cin, cout, k, g, bias, ndim=nd)
    out = conv_out(n, k, s, p, d)
    pairs = resolve_padding(p, n, k, s, d)
    rf_out = rf_conv(rf, k, s, pairs, d)
    kv = "*".join(map(str, k))
    cin_text = str(cin) if g == 1 else f"({cin}/{g})"
    formula = f"({kv}*{cin_text} + 1)*{cout}" if bias else f"{kv}*{cin_text}*{cout}"
    step = LayerStep(layer, "conv", layout, n, cin, out, cout, rf_out, params, formula, bias, g, math.prod(k))
    step.macs = conv_macs(cin, cout, k, out, g)
    step.size_formulas = _size_lines(n, k, s, pairs, d, out, False)
    _windowed_notes(step, p, k, s, pairs, d, False)
    step.rf_formulas = _rf_bodies(rf, rf_out, effective_kernel(k, d), s, tuple(pr[0] for pr in pairs))
    return step


def _pool(layer: Layer, state: State, layout: str) -> LayerStep:
    spatial, c, rf = state
    n = _need_map(layer, spatial)
    nd = len(n)
    k = axis_ints(layer, "f", nd, None)
    s, d = axis_ints(layer, "s", nd, None) if "s" in layer.opts else k, axis_ints(layer, "d", nd, 1)
    p, ceil_mode = padding_opt(layer, nd), flag(layer, "ceil", False)
    out = pool_out(n, k, s, p, d, ceil_mode=ceil_mode)
    pairs = resolve_padding(p, n, k, s, d)
    rf_out = rf_conv(rf, k, s, pairs, d)
    step = LayerStep(layer, layer.kind, layout, n, c, out, c, rf_out)
    step.size_formulas = _size_lines(n, k, s, pairs, d, out, ceil_mode)
    _windowed_notes(step, p, k, s, pairs, d, ceil_mode)
    step.rf_formulas = _rf_bodies(rf, rf_out, effective_kernel(k, d), s, tuple(pr[0] for pr in pairs))
    return step


def _followed(layer: Layer, rf: RF, fn: Callable[[RF], RF]) -> tuple[RF, str]:
    """``(fn(rf), "")``, or a stand-in RF and why, when the exact field's pattern is too long to walk."""
    try:
        return fn(rf), ""
    except PeriodTooLong as err:
        advice = "Use smaller strides or scales, or get the output size alone with `cnnlab explain shape`."
        return rf_input(rf.ndim), f"layer '{layer.text}': {err}. {advice}"


def _conv_t(layer: Layer, state: State, layout: str) -> LayerStep:
    spatial, cin, rf = state
    n = _need_map(layer, spatial)
    nd = len(n)
    k, s, d = axis_ints(layer, "f", nd, None), axis_ints(layer, "s", nd, 1), axis_ints(layer, "d", nd, 1)
    p, op = axis_ints(layer, "p", nd, 0), axis_ints(layer, "op", nd, 0)
    cout, g, bias = positive(layer, "c", cin), positive(layer, "g", 1), flag(layer, "bias", True)
    params = conv_transpose_params(cin, cout, k, g, bias, ndim=nd)
    out = conv_transpose_out(n, k, s, p, op, d)
    rf_out, lost = _followed(layer, rf, lambda r: rf_conv_transpose(r, k, s, p, d))
    kv = "*".join(map(str, k))
    cout_text = str(cout) if g == 1 else f"({cout}/{g})"
    formula = f"{cin}*{kv}*{cout_text}" + (f" + {cout}" if bias else "")
    step = LayerStep(
        layer, "convT", layout, n, cin, out, cout, rf_out, params, formula, bias, g, math.prod(k)
    )
    step.macs = conv_transpose_macs(cin, cout, k, n, g)
    step.rf_lost = lost
    step.dilation_note = dilation_note(k, d)
    step.size_formulas = _merge(
        [
            (a, f"({ni}-1)*{si} - 2*{pi} + {di}*({ki}-1) + {oi} + 1 = {o}")
            for a, ni, ki, si, pi, di, oi, o in zip(axis_names(nd), n, k, s, p, d, op, out)
        ]
    )
    step.rf_formulas = _merge(
        [
            (a, f"j = {rf.jump[i]:.12g}/{s[i]} = {rf_out.jump[i]:.12g}, RF = {rf_out.size[i]} (widest run of "
                f"inputs feeding one output), start = {rf_out.start[i]:.12g}")
            for i, a in enumerate(axis_names(nd))
        ]
    )  # fmt: skip
    return step


# what one output unit of each upsampling mode reads (PyTorch's rules, followed by rf_upsample)
_UP_READS = {
    "nearest": "each unit copies one input unit",
    "nearest-exact": "each unit copies one input unit",
    "bilinear": "each unit mixes the two nearest input units per axis",
    "linear": "each unit mixes the two nearest input units per axis",
    "bicubic": "each unit mixes the four nearest input units per axis",
}


def _upsample(layer: Layer, state: State, layout: str) -> LayerStep:
    spatial, c, rf = state
    n = _need_map(layer, spatial)
    scale, mode = positive(layer, "s", 2), layer.opts.get("mode", "nearest").lower()
    modes: dict[str, UpsampleMode] = {
        "nearest": "nearest", "nearest-exact": "nearest-exact", "bilinear": "bilinear", "linear": "bilinear",
        "bicubic": "bicubic",
    }  # fmt: skip
    if mode not in modes:
        raise ValueError(
            f"mode must be nearest, nearest-exact, bilinear or bicubic in layer '{layer.text}'; received "
            f"mode={mode!r}. Write e.g. 'up s=2 mode=bilinear'."
        )
    rf_out, lost = _followed(layer, rf, lambda r: rf_upsample(r, scale, modes[mode]))
    out = tuple(v * scale for v in n)
    step = LayerStep(layer, "up", layout, n, c, out, c, rf_out, rf_lost=lost)
    step.size_formulas = _merge([(a, f"{v}*{scale} = {o}") for a, v, o in zip(axis_names(len(n)), n, out)])
    # the numbers filled in per axis, like the other layers ("j = j_in/2, RF = (4, 4)" before)
    step.rf_formulas = _merge(
        [
            (a, f"j = {rf.jump[i]:.12g}/{scale} = {rf_out.jump[i]:.12g}, RF = {rf_out.size[i]} ({mode} upsampling: "
                f"{_UP_READS[mode]}), start = {rf_out.start[i]:.12g}")
            for i, a in enumerate(axis_names(len(n)))
        ]
    )  # fmt: skip
    return step


def _whole_map(layer: Layer, state: State) -> tuple[RF, list[str]]:
    # an fc layer or global pooling sees the whole map: a kernel as large as the map, sized by its one unit
    spatial, _, rf = state
    if spatial is None:
        return rf, []
    rf_out = rf_whole_map(rf, spatial)
    return rf_out, _rf_bodies(rf, rf_out, spatial, (1,) * len(spatial), (0,) * len(spatial))


def _fc(layer: Layer, state: State, layout: str, flat_map: tuple[int, ...] | None = None) -> LayerStep:
    spatial, c, rf = state
    units, bias = positive(layer, "n"), flag(layer, "bias", True)
    nin = volume(spatial, c)
    # after a flatten the map is gone from the shape, but each fc unit still reads all of it
    rf_out, rf_text = _whole_map(layer, state if flat_map is None else (flat_map, c, rf))
    params = linear_params(nin, units, bias)
    formula = f"{nin}*{units} + {units}" if bias else f"{nin}*{units}"
    step = LayerStep(layer, "fc", layout, spatial, c, None, units, rf_out, params, formula, bias)
    step.macs = linear_macs(nin, units)
    flat = f"flatten {fmt_shape(spatial, c, layout)} = {nin}, " if spatial is not None else ""
    step.size_formulas = [f"{flat}{nin} -> {units} units"]
    step.rf_formulas = rf_text
    return step


def step_layer(layer: Layer, state: State, layout: str, flat_map: tuple[int, ...] | None = None) -> LayerStep:
    """Apply one layer to ``(spatial sizes or None, channels, RF)``.

    ``flat_map`` is the map an earlier ``flatten`` turned into a vector: an fc layer reads all of it.
    """
    spatial, c, rf = state
    if layer.kind == "conv":
        return _conv(layer, state, layout)
    if layer.kind in ("maxpool", "avgpool"):
        return _pool(layer, state, layout)
    if layer.kind == "convT":
        return _conv_t(layer, state, layout)
    if layer.kind == "up":
        return _upsample(layer, state, layout)
    if layer.kind == "fc":
        return _fc(layer, state, layout, flat_map)
    if layer.kind == "gap":
        n = _need_map(layer, spatial)
        rf_out, rf_text = _whole_map(layer, state)
        step = LayerStep(layer, "gap", layout, n, c, (1,) * len(n), c, rf_out)
        step.size_formulas, step.rf_formulas = [f"global average over {fmt_shape(n, c, layout)}"], rf_text
        return step
    if layer.kind == "bn":
        return LayerStep(layer, "bn", layout, spatial, c, spatial, c, rf, batchnorm_params(c), f"2*{c}")
    if layer.kind == "flatten":
        return LayerStep(layer, "flatten", layout, spatial, c, None, volume(spatial, c), rf)
    return LayerStep(layer, layer.kind, layout, spatial, c, spatial, c, rf)
