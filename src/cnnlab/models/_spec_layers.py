"""The layer types of the declarative spec (:mod:`cnnlab.models.spec`): one builder function each.

Every builder takes ``(builder, args, input shape)``, checks its options against the shape it
receives, and returns ``(module, output shape)``; :data:`LAYER_TYPES` maps each type name to its
builder, default options and aliases. ``Residual`` and ``Concat`` are the two block modules.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from cnnlab.arith import conv_out, conv_transpose_out, pool_out, resolve_padding
from cnnlab.errors import SpecError
from cnnlab.layers import EDGE_KERNELS, Conv2d, EdgeFilter2d, GatedConv2d, ResizeConv2d, SumPool2d

if TYPE_CHECKING:
    from cnnlab.models.spec import _Builder

Shape = tuple[int, ...]  # (C, H, W) for maps, (F,) once flattened
REQUIRED = object()  # marks an option without a default
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

    def zero_init_last(self) -> bool:
        """Zero the scale of the body's last layer when it is a batch norm, so that the block starts as its
        shortcut (the "zero gamma" trick, ``zero_gamma=true``); False, and nothing changed, for a body that
        ends otherwise (a conv: zeroing an earlier batch norm would not silence the body)."""
        layers = list(self.body.children()) if isinstance(self.body, nn.Sequential) else [self.body]
        last = layers[-1] if layers else None
        if not (isinstance(last, nn.modules.batchnorm._BatchNorm) and last.weight is not None):
            return False
        nn.init.zeros_(last.weight)
        return True


class Concat(nn.Module):
    """Runs every branch (children ``branch1``, ``branch2``, ...) on the input; concatenates along channels."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        for i, branch in enumerate(branches, 1):
            self.add_module(f"branch{i}", branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)  # (B, sum of C_i, H, W)


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
    mode = a.choice("padding_mode", PADDING_MODES)
    if mode != "zeros":  # torch's ConvTranspose2d refuses any other mode; never build zeros silently
        raise a.error(
            f"a transposed convolution pads only with zeros (PyTorch's ConvTranspose2d has no other "
            f"padding_mode); received padding_mode={mode!r}. Remove `padding_mode`, or upsample with "
            "`upsample` and pad a `conv` with that padding_mode."
        )
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
    if not a.layers("body"):  # an empty body would compute x + shortcut(x): 2x for the identity
        raise a.error("a residual needs at least one layer in its body; received an empty list. Write "
                      "residual: [conv: 16, ...] (the layers whose output is added to the input).")  # fmt: skip
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
