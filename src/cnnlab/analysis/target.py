"""Resolve a command-line TARGET to a model: a registered name, a spec file, or ``file.py:factory``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from cnnlab.errors import SpecError
from cnnlab.models.spec import SPEC_SUFFIXES


@dataclass
class Target:
    """A model to analyse, its display name and the input size it declares (None if it declares none)."""

    model: nn.Module
    name: str
    input_size: tuple[int, ...] | None


def _declared_size(obj: Any) -> tuple[int, ...] | None:
    for key in ("input_size", "input_shape", "input"):
        value = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            return tuple(value)
    return None


def _from_spec(path: Path) -> Target:
    from cnnlab.models.spec import from_spec, load_spec

    model = from_spec(path)
    size = _declared_size(model) or _declared_size(load_spec(path))
    return Target(model, path.stem, size)


def _describe(err: BaseException) -> str:
    """``SyntaxError: invalid syntax (nets.py, line 3)``: the exception's type and message, on one line."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _from_python(spec: str) -> Target:
    file_part, _, factory_name = spec.rpartition(":")
    path = Path(file_part)
    if not path.is_file():
        raise FileNotFoundError(f"TARGET {spec!r}: the Python file {file_part!r} does not exist.")
    module_name = f"_cnnlab_target_{abs(hash(path.resolve()))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise SpecError(f"TARGET {spec!r}: cannot import {file_part!r} as a Python module.")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:  # the user's file: a syntax error, a failed import, an error at import time
        sys.modules.pop(module_name, None)
        raise SpecError(
            f"TARGET {spec!r}: importing {file_part} failed with {_describe(err)}. Fix the file (run it "
            "with python to see where); CNNLAB_DEBUG=1 shows the full traceback."
        ) from err
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = sorted(n for n in vars(module) if callable(getattr(module, n)) and not n.startswith("_"))
        raise SpecError(
            f"TARGET {spec!r}: {file_part} has no callable {factory_name!r}; it defines: {', '.join(names)}. "
            "Write path/to/file.py:FUNCTION where FUNCTION returns an nn.Module."
        )
    try:
        model = factory()
    except Exception as err:  # the user's factory: missing arguments, or an error while it builds
        needs_arguments = isinstance(err, TypeError) and "argument" in str(err)
        fix = (
            "cnnlab calls the factory with no arguments: give every parameter a default, or wrap it in a "
            "function that takes none" if needs_arguments else f"fix {factory_name}() (run it in Python to see where)"
        )
        raise SpecError(
            f"TARGET {spec!r}: calling {factory_name}() failed with {_describe(err)}. {fix}; CNNLAB_DEBUG=1 "
            "shows the full traceback."
        ) from err
    if not isinstance(model, nn.Module):
        raise SpecError(f"TARGET {spec!r}: {factory_name}() returned {type(model).__name__}, not an nn.Module.")
    size = _declared_size(model) or _declared_size(vars(module))
    return Target(model, factory_name, size)


def load_target(target: str) -> Target:
    """A registered model name, a spec file (.toml/.yaml/.json) or ``path/to/file.py:factory``.

    >>> load_target("lenet5").input_size  # doctest: +SKIP
    (1, 32, 32)
    """
    if ".py:" in target or target.endswith(".py"):
        if ":" not in target:
            raise ValueError(f"TARGET {target!r} is a Python file: add the factory, as in {target}:build_model.")
        return _from_python(target)
    path = Path(target)
    if path.suffix.lower() in SPEC_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"TARGET {target!r}: the spec file does not exist.")
        return _from_spec(path)
    if path.is_file():
        raise SpecError(
            f"TARGET {target!r} is a file, but not one cnnlab reads as a model: a spec file must end in "
            f"{', '.join(SPEC_SUFFIXES)}, and Python code is given as file.py:FUNCTION. Rename the file, or "
            "give a registered model name (`cnnlab models` lists them)."
        )
    from cnnlab.models import create_model, model_info

    info = model_info(target)  # unknown names raise ValueError listing the closest ones
    return Target(_build_on_meta(create_model, target), target, tuple(info.input_size))


class _SkipRandomOnMeta(TorchFunctionMode):
    """Random in-place initialisers (``normal_``, ``uniform_``) on a meta tensor do nothing.

    A meta tensor has no values to fill, yet ``Tensor.normal_`` on one goes through PyTorch's Python
    reference implementation, whose first call imports torch._dynamo: 1.3-2.5 s of the 3 s that
    ``cnnlab inspect resnet50`` took. Skipping the call gives the same (value-less) tensor.
    """

    SKIPPED = frozenset(
        getattr(torch.Tensor, name)
        for name in ("normal_", "uniform_", "bernoulli_", "exponential_", "geometric_", "log_normal_",
                     "cauchy_", "random_")
    )  # fmt: skip

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self.SKIPPED and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def _build_on_meta(create: Any, name: str) -> nn.Module:
    """Build a registered model on the meta device (VGG-16's 138 M weights are never allocated).

    The analysis only needs shapes; a builder that cannot run on meta is built on the CPU instead.
    """
    try:
        with torch.device("meta"), _SkipRandomOnMeta():
            model: nn.Module = create(name)
    except Exception:  # a builder that reads tensor values while it initialises
        model = create(name)
    return model
