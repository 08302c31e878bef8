"""A small text language for layer stacks, and a walk that fills in every number per layer.

Layers are separated by ``;`` or new lines; each is ``[name:] kind [count] key=value ...``::

    conv f=5 s=1 c=8; pool f=2 s=2; conv f=5 c=16; pool f=2 s=2; fc 120; fc 84; fc 10

=========================  =======================================================================
kind                       keys (``f`` kernel, ``s`` stride, ``p`` padding, ``d`` dilation)
=========================  =======================================================================
``conv``                   f, s=1, p=0 (int, ``HxW``, ``same``, ``valid``), d=1, c=out channels
                           (default: same as input), g=groups, bias=1
``pool`` / ``maxpool`` /   f, s=f, p=0, d=1 (max only), ceil=0
``avgpool``
``convT`` / ``deconv``     f, s=1, p=0, op=output padding, d=1, c, g, bias=1
``up``                     s=2 (scale), mode=nearest|nearest-exact|bilinear|bicubic
``fc`` / ``linear``        the number of units (``fc 120`` or ``n=120``), bias=1; flattens its input
``gap``                    global average pooling to 1x1; ``bn``: batch norm (2C parameters);
                           ``relu``, ``dropout``, ``softmax``, ``flatten``: no parameters
=========================  =======================================================================

Every layer also takes ``params=N``, the parameter count a table claims, to be checked. Kernel,
stride, padding and dilation take one int or one per axis written ``1x7`` (``HxW``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from cnnlab.arith._norm import axis_names

KINDS = {
    "conv": "conv", "pool": "maxpool", "maxpool": "maxpool", "max": "maxpool", "avgpool": "avgpool",
    "avg": "avgpool", "convt": "convT", "deconv": "convT", "transposed": "convT", "up": "up",
    "upsample": "up", "fc": "fc", "linear": "fc", "dense": "fc", "gap": "gap", "bn": "bn",
    "batchnorm": "bn", "relu": "noop", "dropout": "noop", "softmax": "noop", "flatten": "flatten",
}  # fmt: skip
_KEYS = {
    "conv": {"f", "s", "p", "d", "c", "g", "bias"},
    "maxpool": {"f", "s", "p", "d", "ceil"},
    "avgpool": {"f", "s", "p", "ceil"},
    "convT": {"f", "s", "p", "op", "d", "c", "g", "bias"},
    "up": {"s", "mode"},
    "fc": {"n", "bias"},
    "gap": set(),
    "bn": set(),
    "noop": set(),
    "flatten": set(),
}


@dataclass(frozen=True)
class Layer:
    """One parsed layer: ``kind`` plus its options (strings as typed, checked when used)."""

    name: str
    kind: str
    text: str
    opts: dict[str, str] = field(default_factory=dict)
    claimed_params: int | None = None


def _int(value: str, key: str, layer: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{key} must be a whole number in layer '{layer}'; received {key}={value!r}. Write e.g. {key}=2."
        ) from None


# an option to show in messages, per kind
_EXAMPLE = {"conv": "f=3", "maxpool": "f=2", "avgpool": "f=2", "convT": "f=2", "up": "s=2", "fc": "n=10"}


def _bad_word(text: str, word0: str, kind: str, word: str) -> str:
    """The message for a word that is not key=value (or a layer that takes no options at all)."""
    if not _KEYS[kind]:
        return (
            f"layer '{text}' takes no options: {word0} has no settings in the layer language; received "
            f"{word!r}. Write just '{word0}'."
        )
    allowed = ", ".join(sorted(_KEYS[kind]))
    return (
        f"expected key=value in layer '{text}'; received {word!r}. {'An' if word0[0] in 'aeiou' else 'A'} "
        f"{word0} layer takes {allowed} "
        f"(and params=N); write e.g. '{word0} {_EXAMPLE[kind]}'."
    )


def _parse_layer(text: str, counts: dict[str, int]) -> Layer:
    name = ""
    label = re.match(r"^\s*([A-Za-z_][\w.-]*)\s*:\s*(.*)$", text)
    if label:
        name, text = label.group(1), label.group(2)
    words = text.split()
    if not words:  # 'FC3:' alone: a label with no layer after it
        raise ValueError(
            f"layer label '{name}:' names no layer; received {name + ':'!r}. Write the layer after the label, "
            f"e.g. '{name}: fc 120' (or drop the label)."
        )
    kind = KINDS.get(words[0].lower())
    if kind is None:
        raise ValueError(
            f"unknown layer kind {words[0]!r} in '{text.strip()}'. Use one of: conv, pool, maxpool, avgpool, "
            "convT, up, fc, gap, bn, relu, dropout, flatten (e.g. 'conv f=3 c=16; pool f=2; fc 10')."
        )
    opts: dict[str, str] = {}
    claimed = None
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq and kind == "fc" and "n" not in opts:
            key, value = "n", word
        elif not eq or not value:
            raise ValueError(_bad_word(text.strip(), words[0], kind, word))
        key = key.lower()
        if key == "params":
            claimed = _int(value.replace(",", ""), "params", text.strip())
            if claimed < 0:
                raise ValueError(
                    f"params is the parameter count a table claims, a whole number >= 0; received "
                    f"params={value} in layer '{text.strip()}'. Write e.g. params=608."
                )
            continue
        if key not in _KEYS[kind]:
            allowed = ", ".join(sorted(_KEYS[kind] | {"params"}))
            raise ValueError(
                f"layer '{text.strip()}' does not take {key}=; a {kind} layer takes: {allowed}. "
                "See `cnnlab explain shape --help` for the layer language."
            )
        opts[key] = value
    label_kind = words[0].lower() if kind == "noop" else kind.lower()  # relu1, dropout1: not "noop1"
    counts[label_kind] = counts.get(label_kind, 0) + 1
    if not name:
        name = f"{label_kind}{counts[label_kind]}"
    return Layer(name=name, kind=kind, text=text.strip(), opts=opts, claimed_params=claimed)


def parse_spec(text: str) -> list[Layer]:
    """Parse ``"conv f=5 c=8; pool f=2; fc 10"`` into layers (names default to ``conv1``, ``pool1``, ...).

    >>> [layer.name for layer in parse_spec("conv f=5 c=8; pool f=2; C3: conv f=5 c=16; fc 10")]
    ['conv1', 'maxpool1', 'C3', 'fc1']
    """
    parts = [part for part in re.split(r"[;\n]", text) if part.strip()] if isinstance(text, str) else []
    if not parts:  # empty, or only separators such as ' ; ; '
        raise ValueError(
            f"the layer spec holds no layer; received {text!r}. Give layers separated by ';', e.g. "
            "'conv f=5 c=8; pool f=2; fc 10'."
        )
    counts: dict[str, int] = {}
    return [_parse_layer(part, counts) for part in parts]


def parse_input(text: str, layout: str = "hwc") -> tuple[tuple[int, ...], int]:
    """Parse an input shape into (spatial sizes, channels); ``layout`` is ``hwc`` (the seeds' ``32x32x3``)
    or ``chw`` (PyTorch's order). One, two or three spatial axes: ``L,C`` / ``H,W,C`` / ``D,H,W,C``.

    >>> parse_input("32x32x3")
    ((32, 32), 3)
    >>> parse_input("3,224,224", "chw")
    ((224, 224), 3)
    """
    well_formed = re.fullmatch(r"\d+(\s*[,x×]\s*\d+|\s+\d+)*", text.strip()) is not None
    values = [int(p) for p in re.split(r"[,x×\s]+", text.strip())] if well_formed else []
    if not 2 <= len(values) <= 4 or min(values) < 1 or layout not in ("hwc", "chw"):
        raise ValueError(
            f"input must be 2 to 4 positive whole numbers such as '32,32,3' (H,W,C; with layout chw: C,H,W); "
            f"received {text!r} with layout {layout!r}. A single-channel 28x28 image is '28,28,1'."
        )
    if layout == "chw":
        return tuple(values[1:]), values[0]
    return tuple(values[:-1]), values[-1]


def axis_ints(layer: Layer, key: str, ndim: int, default: int | None) -> tuple[int, ...]:
    """An option written ``3`` or ``1x7`` as one int per axis."""
    raw = layer.opts.get(key)
    if raw is None:
        if default is None:
            raise ValueError(f"layer '{layer.text}' needs {key}= (e.g. {key}=3).")
        return (default,) * ndim
    try:
        parts = [int(v) for v in raw.lower().split("x")]
    except ValueError:
        raise ValueError(
            f"{key} must be a whole number, or one per axis like 1x7, in layer '{layer.text}'; received "
            f"{key}={raw!r}. Write e.g. {key}=3."
        ) from None
    if len(parts) == 1:
        return (parts[0],) * ndim
    if len(parts) != ndim:
        raise ValueError(
            f"{key}={raw} in layer '{layer.text}' has {len(parts)} values but the input has {ndim} spatial "
            f"axes ({', '.join(axis_names(ndim))}). Write one number or {'x'.join(['N'] * ndim)}."
        )
    return tuple(parts)


def padding_opt(layer: Layer, ndim: int) -> Any:
    """``p=`` as an int tuple or the strings ``same`` / ``valid``."""
    raw = layer.opts.get("p", "0").lower()
    if raw in ("same", "valid"):
        return raw
    return axis_ints(layer, "p", ndim, 0)


def flag(layer: Layer, key: str, default: bool) -> bool:
    """A 0/1 (or true/false) option."""
    raw = layer.opts.get(key)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"{key} must be 0 or 1 in layer '{layer.text}'; received {key}={raw!r}.")


def positive(layer: Layer, key: str, default: int | None = None) -> int:
    """A single positive int option."""
    raw = layer.opts.get(key)
    if raw is None:
        if default is None:
            raise ValueError(f"layer '{layer.text}' needs {key}= (e.g. {key}=16).")
        return default
    value = _int(raw, key, layer.text)
    if value < 1:
        raise ValueError(f"{key} must be positive in layer '{layer.text}'; received {key}={value}.")
    return value


def fmt_shape(spatial: tuple[int, ...] | None, channels: int, layout: str) -> str:
    """``28x28x8`` (hwc) or ``8x28x28`` (chw); a flat vector is just its length."""
    if spatial is None:
        return str(channels)
    dims = (channels, *spatial) if layout == "chw" else (*spatial, channels)
    return "x".join(str(v) for v in dims)


def shape_list(spatial: tuple[int, ...] | None, channels: int, layout: str) -> list[int]:
    """The shape as a JSON list in the chosen layout."""
    if spatial is None:
        return [channels]
    return [channels, *spatial] if layout == "chw" else [*spatial, channels]


def group_digits(n: int) -> str:
    """``52794`` -> ``52,794``."""
    return f"{n:,}"


def volume(spatial: tuple[int, ...] | None, channels: int) -> int:
    """Number of activations: prod(spatial) * channels."""
    return channels * (math.prod(spatial) if spatial else 1)
