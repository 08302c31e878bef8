"""Build a network from a declarative spec: a TOML, YAML or JSON file, or the same as a Python dict.

A spec names the input ``[C, H, W]`` and lists the layers in order. Each layer is a mapping with
**exactly one key that is a layer type**; that key's value is the layer's main argument (``conv: 6``
is 6 output channels, ``maxpool: 2`` a 2x2 window) or a mapping of options, and the other keys are
options too.
A bare string (``"relu"``) is a layer without options, and ``name:`` sets the child module's name.

.. code-block:: yaml

    name: tiny
    input: [1, 28, 28]
    layers:
      - conv: 8
        kernel: 3
        padding: same
      - relu
      - maxpool: 2
      - residual:
          body: [{conv: 8, padding: 1}, bn, relu, {conv: 8, padding: 1}, bn]
        act: relu
      - concat: [[{conv1x1: 4}], [{conv: 4, padding: 1}]]
      - global_avgpool
      - flatten
      - linear: 10

The builder walks the shape ``(C, H, W)`` through the layers, so input channels and features are
inferred, and every rule is checked while building, with :mod:`cnnlab.arith` doing the size
arithmetic: an unknown type or option, channels that do not chain (an explicit ``in:``), a kernel
larger than the padded map, a concat of branches of different sizes, a residual whose body and
shortcut disagree. Each failure is a :class:`~cnnlab.errors.SpecError` naming the layer's path
(``layers[3].concat[1][0]``), type and name, the rule, the values received and a fix.

The result is a :class:`SpecNet`: ``features`` then ``head``. When the last layer is ``linear`` it is
the classifier, and the head starts at the first flatten / global pool of the run of head layers
(flatten, global pools, linear, dropout, activations, bn, identity) that ends the spec;
``forward_features`` returns the map before it (``num_features`` channels), and ``reset_classifier``
replaces the last linear. The full reference is ``docs/spec.md``.

>>> net = from_spec({"input": [1, 8, 8], "layers": [{"conv": 4}, "relu", "flatten", {"linear": 3}]})
>>> net(torch.zeros(2, 1, 8, 8)).shape, net.num_features
(torch.Size([2, 3]), 4)
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.arith import conv_out, conv_transpose_out, pool_out, resolve_padding
from cnnlab.errors import SpecError
from cnnlab.layers import EDGE_KERNELS, Conv2d, EdgeFilter2d, GatedConv2d, ResizeConv2d, SumPool2d

__all__ = ["LAYER_TYPES", "Concat", "Residual", "SpecNet", "from_spec", "load_spec"]

Shape = tuple[int, ...]  # (C, H, W) for maps, (F,) once flattened
REQUIRED = object()  # marks an option without a default
TOP_KEYS = ("name", "input", "layers", "description")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}  # fmt: skip


class Residual(nn.Module):
    """``act(body(x) + shortcut(x))``; the shortcut is the identity unless the spec gives one."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.body(x) + self.shortcut(x))
        return out


class Concat(nn.Module):
    """Runs every branch (children ``branch1``, ``branch2``, ...) on the input; concatenates along channels."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        for i, branch in enumerate(branches, 1):
            self.add_module(f"branch{i}", branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)  # (B, sum of C_i, H, W)


class SpecNet(nn.Module):
    """A network built from a spec: ``features`` (an ``nn.Sequential``) then ``head`` (maybe empty).

    ``input_size`` is the spec's input, ``output_shape`` the builder's prediction for one sample and
    ``spec`` the spec itself (plain data, for checkpoints).
    """

    def __init__(
        self, name: str, spec: dict[str, Any], input_size: Shape, features: nn.Sequential, head: nn.Sequential,
        num_features: int, output_shape: Shape, has_classifier: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.name = name
        self.spec = spec
        self.input_size = input_size
        self.output_shape = output_shape
        self.num_features = num_features
        self.has_classifier = has_classifier
        self.features = features
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        layers = list(self.head)
        if pre_logits and self.has_classifier:
            layers = layers[:-1]  # everything but the classifier
        for layer in layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer with a fresh one giving ``num_classes`` outputs."""
        if not self.has_classifier:
            raise SpecError(
                f"reset_classifier: spec {self.name!r} has no classifier head (its last layer is not `linear`), "
                "so there is nothing to replace. End the spec with a `linear` layer to give it one."
            )
        last = self.head[-1]  # a Linear: has_classifier guarantees it
        self.head[-1] = nn.Linear(int(last.in_features), num_classes, bias=last.bias is not None)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, output_shape={self.output_shape}"


# ----------------------------------------------------------------------------------------------------
# Reading one layer's options
# ----------------------------------------------------------------------------------------------------


class _Args:
    """The options of one layer, with typed getters that raise SpecError naming the layer."""

    def __init__(
        self, path: str, kind: str, key: str, name: str, values: dict[str, Any], defaults: dict[str, Any]
    ) -> None:
        self.path, self.kind, self.key, self.name = path, kind, key, name  # key: the type as written
        self.values, self.defaults = values, defaults

    def error(self, text: str) -> SpecError:
        return SpecError(f"spec {self.path} ({self.kind} {self.name!r}): {text}")

    def raw(self, key: str) -> Any:
        value = self.values.get(key, self.defaults[key])
        if value is REQUIRED:
            raise self.error(
                f"the option `{key}` is required; received none. Write e.g. `{self.kind}: {{{key}: ...}}`."
            )
        return value

    def integer(self, key: str, minimum: int = 1) -> int:
        value = self.raw(key)
        if not _is_int(value) or value < minimum:
            raise self.error(f"`{key}` must be an integer >= {minimum}; received {key}={value!r}.")
        return int(value)

    def pair(self, key: str, minimum: int = 1) -> tuple[int, int]:
        """An int (both axes) or ``[h, w]``."""
        value = self.raw(key)
        values = value if isinstance(value, list | tuple) else [value, value]
        if len(values) != 2 or not all(_is_int(v) and v >= minimum for v in values):
            raise self.error(
                f"`{key}` must be an integer >= {minimum} or a list [height, width] of them; received {key}={value!r}."
            )
        return int(values[0]), int(values[1])

    def padding(self, key: str = "padding", *, strings: bool = True) -> Any:
        """int, [h, w], [[top, bottom], [left, right]], and (if ``strings``) 'same' or 'valid'."""
        value = self.raw(key)
        if strings and value in ("same", "valid"):
            return value
        if _is_int(value):
            return int(value)
        if isinstance(value, list | tuple) and len(value) == 2:
            if all(_is_int(v) for v in value):
                return tuple(int(v) for v in value)
            if strings and all(isinstance(v, list | tuple) and len(v) == 2 and all(map(_is_int, v)) for v in value):
                return tuple((int(v[0]), int(v[1])) for v in value)
        allowed = "an int, [h, w], [[top, bottom], [left, right]], 'same' or 'valid'" if strings else "an int or [h, w]"
        raise self.error(f"`{key}` must be {allowed}; received {key}={value!r}.")

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.error(f"`{key}` must be true or false; received {key}={value!r}.")
        return value

    def number(self, key: str, low: float, high: float) -> float:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.error(f"`{key}` must be a number in [{low}, {high}]; received {key}={value!r}.")
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...] | list[str]) -> str:
        value = self.raw(key)
        if value not in choices:
            raise self.error(f"`{key}` must be one of {', '.join(map(repr, choices))}; received {key}={value!r}.")
        return str(value)

    def layers(self, key: str) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(f"`{key}` must be a list of layers; received {key}={value!r}. Write {key}: [...].")
        return value

    def check_in(self, received: int) -> None:
        """An explicit ``in:`` must equal the channels (or features) that arrive."""
        declared = self.values.get("in")
        if declared is not None and declared != received:
            raise self.error(
                f"channels do not chain: the layer declares in={declared!r} but the layer before gives "
                f"{received}. Remove `in` (it is inferred) or change the previous layer's output to {declared}."
            )

    def arith(self, what: str, fn: Callable[..., tuple[int, ...]], *args: Any, **kwargs: Any) -> tuple[int, ...]:
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            raise self.error(f"{what}: {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------------
# Layer types: each builder takes (builder, args, input shape) and returns (module, output shape)
# ----------------------------------------------------------------------------------------------------


def _spatial(a: _Args, shape: Shape) -> tuple[int, tuple[int, int]]:
    if len(shape) != 3:
        raise a.error(
            f"this layer needs a (C, H, W) feature map but receives the flat shape {shape}; "
            "move it before the `flatten` / global pooling, or use `linear` on flat features."
        )
    return shape[0], (shape[1], shape[2])


def _check_groups(a: _Args, c_in: int, c_out: int, groups: int) -> None:
    if c_in % groups or c_out % groups:
        raise a.error(
            f"groups must divide both the input and output channels; received groups={groups} with "
            f"{c_in} input and {c_out} output channels. Use a divisor of both (e.g. groups=1)."
        )


def _check_padding_mode(a: _Args, mode: str, pairs: tuple[tuple[int, int], ...], hw: tuple[int, int]) -> None:
    """torch pads reflect only by less than the size, circular by at most the size."""
    for axis, (left, right), n in zip("HW", pairs, hw):
        pad = max(left, right)
        if (mode == "reflect" and pad >= n) or (mode == "circular" and pad > n):
            rule = "smaller than" if mode == "reflect" else "at most"
            raise a.error(
                f"padding_mode {mode!r} needs padding {rule} the input along {axis}; received padding {pad} "
                f"for an input of {n}. Use less padding or padding_mode 'zeros' / 'replicate'."
            )


def _conv(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    c, hw = _spatial(a, shape)
    a.check_in(c)
    out, k, s, d = a.integer("out"), a.pair("kernel"), a.pair("stride"), a.pair("dilation")
    p, groups, mode = a.padding(), a.integer("groups"), a.choice("padding_mode", PADDING_MODES)
    _check_groups(a, c, out, groups)
    hw_out = a.arith("the kernel does not fit the (padded) feature map", conv_out, hw, k, s, p, d)
    if mode != "zeros":
        _check_padding_mode(a, mode, resolve_padding(p, hw, k, s, d), hw)
    # plain nn.Conv2d where torch can pad this way (exact-type tools such as quantisation fusers match it);
    # cnnlab.layers.Conv2d for TensorFlow's 'same' at stride > 1 and for (left, right) pairs
    needs_layers = (p == "same" and s != (1, 1)) or (isinstance(p, tuple) and isinstance(p[0], tuple))
    conv_type: Callable[..., nn.Conv2d] = Conv2d if needs_layers else nn.Conv2d
    conv = conv_type(c, out, k, stride=s, padding=p, dilation=d, groups=groups, bias=a.flag("bias"), padding_mode=mode)
    return conv, (out, *hw_out)


def _conv_transpose(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    c, hw = _spatial(a, shape)
    a.check_in(c)
    out, k, s, d = a.integer("out"), a.pair("kernel"), a.pair("stride"), a.pair("dilation")
    p, op = a.padding(strings=False), a.pair("output_padding", 0)
    groups = a.integer("groups")
    _check_groups(a, c, out, groups)
    hw_out = a.arith("impossible transposed convolution", conv_transpose_out, hw, k, s, p, op, d)
    module = nn.ConvTranspose2d(c, out, k, s, p, op, groups=groups, bias=a.flag("bias"), dilation=d)
    return module, (out, *hw_out)


def _pool(kind: str) -> Callable[[_Builder, _Args, Shape], tuple[nn.Module, Shape]]:
    def build(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
        c, hw = _spatial(a, shape)
        k = a.pair("kernel")
        s = k if a.raw("stride") is None else a.pair("stride")
        p, ceil = a.padding(strings=False), a.flag("ceil_mode")
        d = a.pair("dilation") if kind == "max" else (1, 1)
        hw_out = a.arith("the window does not fit the (padded) feature map", pool_out, hw, k, s, p, d, ceil_mode=ceil)
        if kind == "max":
            module: nn.Module = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)
        elif kind == "avg":
            module = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=a.flag("count_include_pad"))
        else:
            module = SumPool2d(k, s, p, ceil_mode=ceil)
        return module, (c, *hw_out)

    return build


def _global_pool(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    c, _hw = _spatial(a, shape)
    return (nn.AdaptiveAvgPool2d(1) if a.kind == "global_avgpool" else nn.AdaptiveMaxPool2d(1)), (c, 1, 1)


def _upsample(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    c, hw = _spatial(a, shape)
    value = a.raw("scale")
    scales = value if isinstance(value, list | tuple) else [value, value]
    if len(scales) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in scales):
        raise a.error(f"`scale` must be a positive number or [height, width] of them; received scale={value!r}.")
    hw_out = tuple(math.floor(n * float(v)) for n, v in zip(hw, scales))  # torch: floor(n * scale)
    if min(hw_out) < 1:
        raise a.error(f"the output would be empty: {hw} times scale {value!r} is {hw_out}. Use a larger scale.")
    mode = a.choice("mode", ("nearest", "bilinear"))
    scale = tuple(float(v) for v in scales)
    return nn.Upsample(scale_factor=scale, mode=mode, align_corners=False if mode == "bilinear" else None), (
        c,
        *hw_out,
    )


def _resize_conv(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    c, hw = _spatial(a, shape)
    a.check_in(c)
    out, k, scale = a.integer("out"), a.pair("kernel"), a.raw("scale")
    if not _is_int(scale) or scale < 1:
        raise a.error(f"`scale` must be a positive integer; received scale={scale!r}.")
    mode = a.choice("mode", ("nearest", "bilinear"))
    return ResizeConv2d(c, out, k, scale, mode, bias=a.flag("bias")), (out, hw[0] * scale, hw[1] * scale)


def _edge(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    c, hw = _spatial(a, shape)
    value = a.raw("kind")
    kinds = [value] if isinstance(value, str) else value
    if not isinstance(kinds, list) or not kinds or not all(k in EDGE_KERNELS for k in kinds):
        raise a.error(f"`kind` must be one of {', '.join(EDGE_KERNELS)} or a list of them; received kind={value!r}.")
    p = a.padding()
    hw_out = a.arith("the 3x3 filter does not fit the (padded) feature map", conv_out, hw, 3, 1, p)
    return EdgeFilter2d(kinds, c, padding=p), (c * len(kinds), *hw_out)


def _gated_conv(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    c, hw = _spatial(a, shape)
    a.check_in(c)
    out, k, s, d, p = a.integer("out"), a.pair("kernel"), a.pair("stride"), a.pair("dilation"), a.padding()
    hw_out = a.arith("the kernel does not fit the (padded) feature map", conv_out, hw, k, s, p, d)
    act = ACTIVATIONS[a.choice("act", ("elu", "relu", "leaky_relu", "tanh"))]
    return GatedConv2d(c, out, k, s, p, d, act, bias=a.flag("bias")), (out, *hw_out)


def _bn(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    a.check_in(shape[0])
    eps, momentum = a.number("eps", 0.0, 1.0), a.number("momentum", 0.0, 1.0)
    bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    return bn(shape[0], eps=eps, momentum=momentum), shape


def _act(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    if a.kind == "leaky_relu":
        return nn.LeakyReLU(a.number("slope", 0.0, 1.0)), shape
    if a.kind == "elu":
        return nn.ELU(a.number("alpha", 0.0, 100.0)), shape
    return ACTIVATIONS[a.kind](), shape


def _dropout(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    p = a.number("p", 0.0, 1.0)
    if a.kind == "dropout2d":
        _spatial(a, shape)
        return nn.Dropout2d(p), shape
    return nn.Dropout(p), shape


def _flatten(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    return nn.Flatten(), (math.prod(shape),)  # (C, H, W) -> (C*H*W,)


def _identity(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    return nn.Identity(), shape


def _linear(_: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    if len(shape) != 1:
        raise a.error(
            f"`linear` needs flat features but receives the map {shape}; add `flatten` (or `global_avgpool` "
            "then `flatten`) before it."
        )
    a.check_in(shape[0])
    out = a.integer("out")
    return nn.Linear(shape[0], out, bias=a.flag("bias")), (out,)


def _sequential(b: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    return b.build_list(a.layers("layers"), shape, f"{a.path}.{a.kind}")


def _residual(b: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    body, out = b.build_list(a.layers("body"), shape, f"{a.path}.residual.body")
    if a.values.get("shortcut") is not None and a.flag("projection"):
        raise a.error("give either `shortcut` (layers) or `projection: true`, not both.")
    shortcut: nn.Module
    if a.values.get("shortcut") is not None:
        shortcut, short = b.build_list(a.layers("shortcut"), shape, f"{a.path}.residual.shortcut")
    elif a.flag("projection") and out != shape:
        shortcut, short = _projection(a, shape, out)
    else:
        shortcut, short = nn.Identity(), shape
    if short != out:
        raise a.error(
            f"a residual adds its body and shortcut, so their shapes must be equal; the body gives {out} but the "
            f"shortcut gives {short} (input {shape}). Add `projection: true` (a 1x1 conv + BN with the right "
            "stride and channels), give a `shortcut` whose output matches, or change the body."
        )
    act_name = a.raw("act")
    if act_name is not None and act_name not in ACTIVATIONS:
        raise a.error(f"`act` must be one of {', '.join(ACTIVATIONS)} or omitted; received act={act_name!r}.")
    act = nn.Identity() if act_name is None else ACTIVATIONS[act_name]()
    return Residual(body, shortcut, act), out


def _projection(a: _Args, shape: Shape, out: Shape) -> tuple[nn.Module, Shape]:
    """1x1 conv (no bias) + BN mapping ``shape`` to ``out``: the stride is the one that gives out's size."""
    if len(shape) != 3 or len(out) != 3:
        raise a.error(f"`projection` needs (C, H, W) maps in and out; received {shape} -> {out}.")
    strides: list[int] = []
    for n, m in zip(shape[1:], out[1:]):
        fits = [s for s in range(1, n + 1) if conv_out(n, 1, s) == (m,)]
        if not fits:
            raise a.error(
                f"`projection` cannot map size {n} to {m} with a strided 1x1 conv (the body gives {out} from "
                f"{shape}); give an explicit `shortcut`."
            )
        strides.append(fits[0])
    conv = nn.Conv2d(shape[0], out[0], 1, stride=(strides[0], strides[1]), bias=False)
    proj = nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out[0])))
    return proj, out


def _concat(b: _Builder, a: _Args, shape: Shape) -> tuple[nn.Module, Shape]:
    branches = a.layers("branches")
    if not branches:
        raise a.error("a concat needs at least one branch; received an empty list. Write concat: [[...], [...]].")
    modules: list[nn.Module] = []
    shapes: list[Shape] = []
    for i, branch in enumerate(branches):
        if not isinstance(branch, list):
            raise a.error(f"branch {i} must be a list of layers ([] for the input itself); received {branch!r}.")
        module, out = b.build_list(branch, shape, f"{a.path}.{a.key}[{i}]")
        modules.append(module if branch else nn.Identity())
        shapes.append(out)
    if len({s[1:] for s in shapes}) > 1 or len({len(s) for s in shapes}) > 1:
        listed = "; ".join(f"branch {i}: {s}" for i, s in enumerate(shapes))
        raise a.error(
            f"branches are concatenated along channels, so all other sizes must be equal; received {listed}. "
            "Change the strides/padding of the branches (e.g. padding: same) so they agree."
        )
    return Concat(modules), (sum(s[0] for s in shapes), *shapes[0][1:])


@dataclass(frozen=True)
class LayerType:
    """One spec layer type: its builder, options (with defaults; REQUIRED if none), main option, aliases."""

    build: Callable[[_Builder, _Args, Shape], tuple[nn.Module, Shape]]
    options: dict[str, Any]
    main: str | None = None
    aliases: tuple[str, ...] = ()


_CONV = {"out": REQUIRED, "kernel": 3, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True,
         "padding_mode": "zeros", "in": None}  # fmt: skip
_RESIZE = {"out": REQUIRED, "kernel": 3, "scale": 2, "mode": "bilinear", "bias": True, "in": None}
_GATED = {"out": REQUIRED, "kernel": 3, "stride": 1, "padding": "same", "dilation": 1, "act": "elu", "bias": True,
          "in": None}  # fmt: skip
_POOL = {"kernel": 2, "stride": None, "padding": 0, "ceil_mode": False}
LAYER_TYPES: dict[str, LayerType] = {
    "conv": LayerType(_conv, _CONV, "out", ("conv2d",)),
    "conv1x1": LayerType(_conv, {**_CONV, "kernel": 1}, "out", ("pointwise",)),
    "conv_transpose": LayerType(
        _conv_transpose, {**_CONV, "output_padding": 0}, "out", ("deconv", "convtranspose", "conv_transpose2d")
    ),
    "resize_conv": LayerType(_resize_conv, _RESIZE, "out"),
    "gated_conv": LayerType(_gated_conv, _GATED, "out"),
    "edge": LayerType(_edge, {"kind": REQUIRED, "padding": 0}, "kind", ("edge_filter",)),
    "bn": LayerType(_bn, {"eps": 1e-5, "momentum": 0.1, "in": None}, None, ("batchnorm", "batch_norm")),
    **{name: LayerType(_act, {}) for name in ("relu", "gelu", "silu", "tanh", "sigmoid")},
    "leaky_relu": LayerType(_act, {"slope": 0.01}, "slope"),
    "elu": LayerType(_act, {"alpha": 1.0}, "alpha"),
    "maxpool": LayerType(_pool("max"), {**_POOL, "dilation": 1}, "kernel", ("max_pool", "maxpool2d")),
    "avgpool": LayerType(_pool("avg"), {**_POOL, "count_include_pad": True}, "kernel", ("avg_pool", "avgpool2d")),
    "sumpool": LayerType(_pool("sum"), _POOL, "kernel", ("sum_pool",)),
    "global_avgpool": LayerType(_global_pool, {}, None, ("gap", "global_avg_pool")),
    "global_maxpool": LayerType(_global_pool, {}, None, ("global_max_pool",)),
    "upsample": LayerType(_upsample, {"scale": 2, "mode": "nearest"}, "scale"),
    "dropout": LayerType(_dropout, {"p": 0.5}, "p"),
    "dropout2d": LayerType(_dropout, {"p": 0.5}, "p"),
    "flatten": LayerType(_flatten, {}),
    "identity": LayerType(_identity, {}),
    "linear": LayerType(_linear, {"out": REQUIRED, "bias": True, "in": None}, "out", ("fc", "dense")),
    "residual": LayerType(_residual, {"body": REQUIRED, "shortcut": None, "projection": False, "act": None}, "body"),
    "concat": LayerType(_concat, {"branches": REQUIRED}, "branches", ("branch",)),
    "sequential": LayerType(_sequential, {"layers": REQUIRED}, "layers", ("block",)),
}
_ALIASES = {alias: kind for kind, t in LAYER_TYPES.items() for alias in (kind, *t.aliases)}
_OPTION_NAMES = frozenset(option for t in LAYER_TYPES.values() for option in t.options)
HEAD_TYPES = frozenset({"flatten", "global_avgpool", "global_maxpool", "linear", "dropout", "identity", "bn",
                        *ACTIVATIONS})  # fmt: skip
COLLAPSE_TYPES = frozenset({"flatten", "global_avgpool", "global_maxpool"})


# ----------------------------------------------------------------------------------------------------
# The builder
# ----------------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self) -> None:
        self.kinds: list[str] = []  # canonical types of the top-level layers, in order (for the head split)
        self.shapes: list[Shape] = []  # and the shape each one gives

    def parse(self, entry: Any, path: str) -> tuple[str, str, str | None, dict[str, Any]]:
        """(canonical type, key as written, explicit name, options) of one layer entry."""
        if isinstance(entry, str):
            entry = {entry: None}
        if not isinstance(entry, Mapping) or not entry:
            raise SpecError(
                f"spec {path}: a layer must be a mapping with one layer-type key (e.g. {{conv: 16, kernel: 3}}) "
                f"or a type name (e.g. relu); received {entry!r}."
            )
        options = dict(entry)
        name = options.pop("name", None)
        if name is not None and (not isinstance(name, str) or not name.isidentifier()):
            raise SpecError(f"spec {path}: `name` must be a Python identifier (letters, digits, _); received {name!r}.")
        types = [k for k in options if k in _ALIASES]
        if len(types) > 1:
            raise SpecError(
                f"spec {path}: one layer per entry, but this one names the types {', '.join(map(repr, types))}; "
                "split it into one entry per layer."
            )
        if not types:
            unknown = [k for k in options if k not in _OPTION_NAMES]
            if not unknown:
                raise SpecError(f"spec {path}: the layer has no type; received {entry!r}. Add one, e.g. conv: 16.")
            close = difflib.get_close_matches(str(unknown[0]), list(_ALIASES), n=4, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise SpecError(
                f"spec {path}: unknown layer type {unknown[0]!r}.{hint} Known types: {', '.join(LAYER_TYPES)}."
            )
        key = types[0]
        kind = _ALIASES[key]
        main = options.pop(key)
        layer = LAYER_TYPES[kind]
        if isinstance(main, Mapping):  # `conv: {out: 8, kernel: 3}`: the options in one mapping
            clash = sorted(set(main) & set(options))
            if clash:
                raise SpecError(f"spec {path} ({kind}): option(s) {', '.join(clash)} given twice; keep one.")
            options.update(main)
        elif main is not None:
            if layer.main is None:
                raise SpecError(
                    f"spec {path} ({kind}): this layer type takes no main value; received {key}: {main!r}. "
                    f"Write `{key}: {{}}` or just `{key}`."
                )
            options[layer.main] = main
        unknown = [k for k in options if k not in layer.options]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), list(layer.options), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise SpecError(
                f"spec {path} ({kind}): unknown option {unknown[0]!r}.{hint} Options of {kind}: "
                f"{', '.join(layer.options) or '(none)'}."
            )
        return kind, str(key), name, options

    def build_list(self, entries: list[Any], shape: Shape, path: str) -> tuple[nn.Sequential, Shape]:
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        counts: dict[str, int] = {}
        top = path == "layers"
        for i, entry in enumerate(entries):
            kind, key, name, options = self.parse(entry, f"{path}[{i}]")
            counts[kind] = counts.get(kind, 0) + 1
            name = name or f"{kind}{'_' if kind[-1].isdigit() else ''}{counts[kind]}"  # conv2, conv1x1_2
            if name in modules:
                raise SpecError(
                    f"spec {path}[{i}] ({kind}): the name {name!r} is already used in this list; rename it."
                )
            args = _Args(f"{path}[{i}]", kind, key, name, options, LAYER_TYPES[kind].options)
            try:
                module, shape = LAYER_TYPES[kind].build(self, args, shape)
            except SpecError:
                raise
            except (ValueError, TypeError, RuntimeError) as exc:  # a rule a torch constructor enforces
                raise args.error(f"{exc}. Check the options against docs/spec.md.") from None
            modules[name] = module
            if top:
                self.kinds.append(kind)
                self.shapes.append(shape)
        return nn.Sequential(OrderedDict(modules)), shape


def _split_head(kinds: list[str]) -> tuple[int, bool]:
    """Index where the head starts among the top-level layers, and whether the last layer is a classifier.

    Only a spec ending with ``linear`` has a head: the trailing run of head-type layers, from its first
    flatten / global pool on (or just the last linear if the run has none).
    """
    if not kinds or kinds[-1] != "linear":
        return len(kinds), False
    start = len(kinds)
    while start > 0 and kinds[start - 1] in HEAD_TYPES:
        start -= 1
    collapse = next((i for i in range(start, len(kinds)) if kinds[i] in COLLAPSE_TYPES), len(kinds) - 1)
    return collapse, True


def _check_top(spec: Mapping[str, Any]) -> tuple[str, Shape, list[Any]]:
    unknown = [k for k in spec if k not in TOP_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), TOP_KEYS, n=2, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise SpecError(f"spec: unknown top-level key {unknown[0]!r}.{hint} Allowed: {', '.join(TOP_KEYS)}.")
    size = spec.get("input")
    if not isinstance(size, list | tuple) or len(size) != 3 or not all(_is_int(v) and v >= 1 for v in size):
        raise SpecError(
            f"spec input: must be [channels, height, width], three positive integers; received input={size!r}. "
            "Write e.g. input: [1, 28, 28]."
        )
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError(f"spec layers: must be a non-empty list of layers; received layers={layers!r}.")
    name = spec.get("name", "spec")
    if not isinstance(name, str):
        raise SpecError(f"spec name: must be a string; received name={name!r}.")
    return name, (int(size[0]), int(size[1]), int(size[2])), layers


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a spec file (``.toml``, ``.yaml``/``.yml`` or ``.json``) into a dict; errors are SpecError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise SpecError(f"spec file {path}: the suffix must be .toml, .yaml, .yml or .json; received {suffix!r}.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"spec file {path}: cannot be read ({exc.strerror}). Check the path.") from None
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise SpecError(f"spec file {path}: not valid {suffix[1:].upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise SpecError(f"spec file {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"spec file {path}: must hold a mapping with `input` and `layers`; received {type(data).__name__}."
        )
    data.setdefault("name", path.stem)
    return data


def from_spec(spec: str | Path | Mapping[str, Any]) -> SpecNet:
    """Build a :class:`SpecNet` from a spec file path or a dict (format: module docstring, docs/spec.md).

    >>> net = from_spec({"name": "t", "input": [3, 8, 8], "layers": [{"conv": 4, "padding": "same"}, "relu"]})
    >>> net.output_shape, [name for name, _ in net.features.named_children()]
    ((4, 8, 8), ['conv1', 'relu1'])
    """
    data = load_spec(spec) if isinstance(spec, str | Path) else copy.deepcopy(dict(spec))
    name, input_size, layers = _check_top(data)
    builder = _Builder()
    seq, out = builder.build_list(layers, input_size, "layers")
    start, classifier = _split_head(builder.kinds)
    children = list(seq.named_children())
    features = nn.Sequential(OrderedDict(children[:start]))
    head = nn.Sequential(OrderedDict(children[start:]))
    feature_shape = builder.shapes[start - 1] if start > 0 else input_size
    return SpecNet(name, data, input_size, features, head, feature_shape[0], out, classifier)
