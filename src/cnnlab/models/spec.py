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
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import SpecError
from cnnlab.models._spec_layers import (
    _ALIASES,
    _OPTION_NAMES,
    COLLAPSE_TYPES,
    HEAD_TYPES,
    LAYER_TYPES,
    Concat,
    Residual,
    Shape,
    _Args,
    _is_int,
)

__all__ = ["LAYER_TYPES", "SPEC_SUFFIXES", "Concat", "Residual", "SpecNet", "from_spec", "is_spec_path", "load_spec"]

SPEC_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def is_spec_path(name: str) -> bool:
    """``name`` names a spec file by its suffix (whether or not it exists), not a registered model.

    >>> is_spec_path("examples/specs/lenet.toml"), is_spec_path("resnet18")
    (True, False)
    """
    return Path(name).suffix.lower() in SPEC_SUFFIXES

TOP_KEYS = ("name", "input", "layers", "description")


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


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a spec file (``.toml``, ``.yaml``/``.yml`` or ``.json``) into a dict; errors are SpecError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise SpecError(f"spec file {path}: the suffix must be .toml, .yaml, .yml or .json; received {suffix!r}.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"spec file {path}: cannot be read ({exc.strerror}). Check the path.") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"spec file {path}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); a "
            "spec is a text file in TOML, YAML or JSON. Check that this is the spec you meant, or save it as UTF-8."
        ) from None
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


def from_spec(spec: str | os.PathLike[str] | Mapping[str, Any]) -> SpecNet:
    """Build a :class:`SpecNet` from a spec file path or a dict (format: module docstring, docs/spec.md).

    >>> net = from_spec({"name": "t", "input": [3, 8, 8], "layers": [{"conv": 4, "padding": "same"}, "relu"]})
    >>> net.output_shape, [name for name, _ in net.features.named_children()]
    ((4, 8, 8), ['conv1', 'relu1'])
    """
    if isinstance(spec, str | os.PathLike):
        data = load_spec(spec)
    elif isinstance(spec, Mapping):
        data = copy.deepcopy(dict(spec))
    else:
        hint = " (a list of layers goes under `layers`)" if isinstance(spec, list | tuple) else ""
        raise SpecError(
            f"spec: must be a path to a .toml/.yaml/.json file or a dict with `input` and `layers`; received "
            f"{type(spec).__name__} {spec!r:.80}{hint}. Write e.g. from_spec('net.yaml') or "
            "from_spec({'input': [1, 28, 28], 'layers': [...]})."
        )
    name, input_size, layers = _check_top(data)
    builder = _Builder()
    seq, out = builder.build_list(layers, input_size, "layers")
    start, classifier = _split_head(builder.kinds)
    children = list(seq.named_children())
    features = nn.Sequential(OrderedDict(children[:start]))
    head = nn.Sequential(OrderedDict(children[start:]))
    feature_shape = builder.shapes[start - 1] if start > 0 else input_size
    return SpecNet(name, data, input_size, features, head, feature_shape[0], out, classifier)
