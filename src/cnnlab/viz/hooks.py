"""Forward hooks that always come off again, and switches (in-place activations, threads) put back after use.

In-place activations (``nn.ReLU(inplace=True)``) overwrite the tensor a hook just captured, so every
capture here runs with ``inplace`` turned off and restores it afterwards.

>>> import torch.nn as nn
>>> m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True))
>>> with no_inplace(m):
...     m[1].inplace
False
>>> m[1].inplace
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "LeafOutput",
    "leaf_modules",
    "no_inplace",
    "one_thread",
    "record_leaves",
    "record_outputs",
    "released_hooks",
]

_PASSIVE = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.Dropout3d, nn.AlphaDropout)


@contextmanager
def no_inplace(model: nn.Module) -> Iterator[None]:
    """Turn every module's ``inplace`` flag off for the block, then restore it."""
    changed = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in changed:
        m.inplace = False  # type: ignore[assignment]
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True  # type: ignore[assignment]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread for the block, then restore the previous count.

    Pictures run one image (or a few dozen small ones) at a time; there, handing work between threads
    costs more than it saves, and on a busy machine (training just finished, other jobs) it made the
    report 3x slower (14 s instead of 4.4 s for fastnet on 2 loaded cores).

    >>> n = torch.get_num_threads()
    >>> with one_thread():
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == n
    True
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def released_hooks() -> Iterator[list[Any]]:
    """Collect hook handles in the yielded list; all are removed when the block ends (even on error)."""
    handles: list[Any] = []
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of modules without children (the ones that do the work)."""
    return [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]


@dataclass
class LeafOutput:
    """What one leaf call saw: its name, module, first input and output (detached clones)."""

    name: str
    module: nn.Module
    input: torch.Tensor | None
    output: torch.Tensor
    order: int = field(default=0)


def record_leaves(model: nn.Module, x: torch.Tensor) -> tuple[list[LeafOutput], torch.Tensor]:
    """Run ``model(x)`` without gradients and record every leaf call's input and output, in call order."""
    calls: list[LeafOutput] = []

    def hook(name: str) -> Any:
        def fn(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if isinstance(out, torch.Tensor):
                inp = args[0].detach().clone() if args and isinstance(args[0], torch.Tensor) else None
                calls.append(LeafOutput(name, module, inp, out.detach().clone(), len(calls)))

        return fn

    was_training = model.training
    model.eval()
    try:
        with no_inplace(model), released_hooks() as handles, torch.no_grad():
            for name, m in leaf_modules(model):
                handles.append(m.register_forward_hook(hook(name)))
            out = model(x)
    finally:
        model.train(was_training)
    return calls, out


def record_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, module, output)`` of every submodule call, leaves and containers, in the order calls end.

    Outputs are not cloned, so ``is`` tells which modules hand on the same tensor: a container ends
    right after its last child and returns that child's output, or the result of its own functional
    code (a residual block's ``relu(out + shortcut)``).
    """
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []

    def hook(name: str) -> Any:
        def fn(module: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
            if isinstance(out, torch.Tensor):
                calls.append((name, module, out))

        return fn

    was_training = model.training
    model.eval()
    try:
        with no_inplace(model), released_hooks() as handles, torch.no_grad():
            for name, m in model.named_modules():
                if name:
                    handles.append(m.register_forward_hook(hook(name)))
            model(x)
    finally:
        model.train(was_training)
    return calls


def is_passive(module: nn.Module) -> bool:
    """Modules that do not change what a picture shows (Identity, Dropout)."""
    return isinstance(module, _PASSIVE)
