"""The strict model registry.

``register_model`` raises on duplicate names, ``list_models`` matches with :mod:`fnmatch`, and an
unknown name raises ``ValueError`` listing the closest valid names (torchvision's ``_api.py``
behaviour, not timm's warn-and-overwrite).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import operator
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model declares about itself.

    ``params``, ``macs`` and ``rf`` are the values at ``input_size`` with the default
    ``num_classes``; a registry-wide test checks them against what cnnlab's analysis measures.
    ``None`` means "not declared" (the test then only checks the model runs).
    """

    name: str
    family: str
    factory: ModelFactory
    input_size: tuple[int, ...]  # (C, H, W) the model is designed for
    num_classes: int = 1000
    task: str = "classification"  # classification | segmentation | reconstruction
    params: int | None = None
    macs: int | None = None  # multiply-adds of conv + linear layers at input_size
    rf: int | None = None  # receptive field (largest, square) of the last spatial feature map
    description: str = ""
    test_kwargs: dict[str, Any] = field(default_factory=dict)  # small widths for fast tests


_REGISTRY: dict[str, ModelInfo] = {}
_FAMILIES_LOADED = False


def register_model(
    name: str,
    *,
    family: str,
    input_size: tuple[int, ...],
    num_classes: int = 1000,
    task: str = "classification",
    params: int | None = None,
    macs: int | None = None,
    rf: int | None = None,
    description: str = "",
    test_kwargs: dict[str, Any] | None = None,
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering a builder under ``name``; a duplicate name raises ``ValueError``.

    >>> @register_model("my_tiny_net", family="example", input_size=(1, 28, 28))  # doctest: +SKIP
    ... def my_tiny_net(num_classes: int = 10, in_chans: int = 1) -> nn.Module: ...
    """

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(
                f"register_model: the name {name!r} is already registered "
                f"(by {_REGISTRY[name].factory.__module__}); registered names must be unique. "
                "Choose another name."
            )
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            factory=factory,
            input_size=tuple(input_size),
            num_classes=num_classes,
            task=task,
            params=params,
            macs=macs,
            rf=rf,
            description=description or (factory.__doc__ or "").strip().split("\n")[0],
            test_kwargs=dict(test_kwargs or {}),
        )
        return factory

    return decorator


def _load_families() -> None:
    """Import every public module of :mod:`cnnlab.models` once, so their builders register."""
    global _FAMILIES_LOADED
    if _FAMILIES_LOADED:
        return
    _FAMILIES_LOADED = True
    import cnnlab.models as pkg

    for module in pkgutil.iter_modules(pkg.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"cnnlab.models.{module.name}")


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching an fnmatch ``pattern``.

    >>> "vgg16" in list_models("vgg*")  # doctest: +SKIP
    True
    """
    _load_families()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_info(name: str) -> ModelInfo:
    """The declared metadata of a registered model; unknown names list the closest matches."""
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"model name {name!r} is not registered.{hint} "
            "Run `cnnlab models` to see every registered model."
        ) from None


def _whole_size(name: str, key: str, value: Any, meaning: str, example: int) -> int:
    """``value`` as an int >= 1 (int-like values such as numpy integers too), else ValueError naming ``key``."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else 0
    except TypeError:
        number = 0
    if number < 1:
        raise ValueError(
            f"create_model({name!r}): {key} must be a whole number >= 1 (the {meaning}); received "
            f"{key}={value!r}. Use e.g. {key}={example}."
        )
    return number


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model as a CPU float32 ``nn.Module``.

    ``num_classes`` and ``in_chans``, when given, must be whole numbers >= 1 (checked here for every
    model, before a layer is built with a zero or negative size).

    >>> model = create_model("lenet5", num_classes=10)  # doctest: +SKIP
    >>> create_model("lenet5", num_classes=0)
    Traceback (most recent call last):
    ValueError: create_model('lenet5'): num_classes must be a whole number >= 1 (the outputs ...
    """
    info = model_info(name)
    sizes = (("num_classes", "outputs of the classifier", info.num_classes),
             ("in_chans", "channels of the input images", info.input_size[0]))  # fmt: skip
    for key, meaning, example in sizes:
        if kwargs.get(key) is not None:
            kwargs[key] = _whole_size(name, key, kwargs[key], meaning, example)
    return info.factory(**kwargs)
