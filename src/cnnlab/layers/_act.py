"""One rule for ``act=``/``activation=`` arguments: a module class, a module instance, or None."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

ActLike = type[nn.Module] | Callable[[], nn.Module] | nn.Module | None


def make_act(act: ActLike, owner: str, arg: str = "act") -> nn.Module:
    """An activation module from a class/factory (called with no arguments), an instance, or None (identity)."""
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    if callable(act):
        made = act()
        if isinstance(made, nn.Module):
            return made
    raise ValueError(
        f"{owner}: {arg} must be an nn.Module class (e.g. nn.ReLU), an nn.Module instance or None; "
        f"received {arg}={act!r}. Use {arg}=nn.ReLU, {arg}=nn.LeakyReLU(0.2) or {arg}=None."
    )
