"""One rule for ``act=``/``activation=`` arguments: a module class, a module instance, a function, or None."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

ActLike = type[nn.Module] | Callable[[], nn.Module] | Callable[[torch.Tensor], torch.Tensor] | nn.Module | None


class FunctionAct(nn.Module):
    """A plain tensor function (``torch.relu``, ``F.gelu``) as an activation module.

    >>> FunctionAct(torch.relu)(torch.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return str(getattr(self.fn, "__qualname__", None) or self.fn)


def _takes_no_arguments(fn: Callable[..., Any]) -> bool:
    """Whether ``fn()`` is a valid call (a factory such as ``lambda: nn.ReLU()``), not ``fn(x)``."""
    try:
        inspect.signature(fn).bind()
    except TypeError:  # a required argument: a tensor function such as F.relu
        return False
    except ValueError:  # no signature: a builtin such as torch.relu, which takes a tensor
        return False
    return True


def make_act(act: ActLike, owner: str, arg: str = "act") -> nn.Module:
    """An activation module from a module class or factory, an instance, a tensor function, or None (identity).

    >>> make_act(torch.nn.functional.relu, "Demo")
    FunctionAct(relu)
    """
    accepted = (
        f"{arg} must be an nn.Module class (e.g. nn.ReLU), an nn.Module instance (e.g. nn.LeakyReLU(0.2)), "
        "a function of one tensor (e.g. torch.relu) or None"
    )
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    if isinstance(act, type):
        if not issubclass(act, nn.Module):
            raise ValueError(f"{owner}: {accepted}; received the class {arg}={act!r}. Use e.g. {arg}=nn.ReLU.")
        try:
            return act()
        except TypeError as exc:  # a class with required arguments, e.g. nn.Threshold
            raise ValueError(
                f"{owner}: {arg}={act.__name__} cannot be built without arguments ({exc}); pass an instance "
                f"instead, e.g. {arg}={act.__name__}(...)."
            ) from None
    if callable(act):
        if not _takes_no_arguments(act):
            return FunctionAct(act)  # type: ignore[arg-type]
        made = act()  # type: ignore[call-arg]
        if isinstance(made, nn.Module):
            return made
        raise ValueError(
            f"{owner}: {accepted}; received {arg}={act!r}, which takes no arguments and returned "
            f"{type(made).__name__}, not an nn.Module. Use {arg}=nn.ReLU, {arg}=torch.relu or {arg}=None."
        )
    raise ValueError(
        f"{owner}: {accepted}; received {arg}={act!r}. Use {arg}=nn.ReLU, {arg}=nn.LeakyReLU(0.2), "
        f"{arg}=torch.relu or {arg}=None."
    )
