"""The fallback capture path: forward hooks on leaf modules, for models torch.fx cannot trace.

Only leaf-module calls become nodes (functional ops between them are invisible). Data flow is
recovered from tensor identity: a module's input is linked to the module that produced that very
tensor; an input produced by an unseen functional op is linked to the most recent node, which
makes receptive fields approximate across such ops (the report says so).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import nodes as K
from cnnlab.analysis.capture import (
    CHECK_INPUT,
    Graph,
    Node,
    attach_saved,
    is_leaf,
    meta_input,
    model_dtype,
    precheck,
    saved_hooks,
    shapes_text,
    tensors_in,
    torch_reason,
)
from cnnlab.errors import AnalysisError


class _HookState:
    def __init__(self, x: torch.Tensor, ndim: int, counter: FlopCounterMode) -> None:
        self.nodes: list[Node] = [
            Node("input", "Input", K.Geometry(K.INPUT), None, [], [], tuple(x.shape), outputs=[x])
        ]
        self.producer: dict[int, int] = {id(x): 0}
        self.keep: list[torch.Tensor] = [x]  # keeps tensors alive so their ids stay unique
        self.ndim = ndim
        self.counter = counter
        self.current = -1
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.open: list[tuple[str, nn.Module, list[tuple[int, ...]], int]] = []
        self.calls: dict[str, int] = {}
        self.unlinked = 0


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Outermost leaf modules (a cnnlab layer's own children are inside it, not separate rows)."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix, _ in found):
            continue
        if is_leaf(m):
            found.append((name or type(m).__name__, m))
    return found


def _pre(state: _HookState, name: str) -> Any:
    def hook(module: nn.Module, args: Any) -> None:
        ins = tensors_in(args)
        state.open.append((name, module, [tuple(t.shape) for t in ins], state.counter.get_total_flops()))
        state.current = len(state.nodes)

    return hook


def _post(state: _HookState, name: str) -> Any:
    def hook(module: nn.Module, args: Any, out: Any) -> None:
        _, _, _, before = state.open.pop()
        ins = tensors_in(args)
        outs = tensors_in(out)
        if not outs:
            return
        inputs = []
        for t in ins:
            if id(t) in state.producer:
                inputs.append(state.producer[id(t)])
            else:  # made by a functional op the hooks cannot see
                inputs.append(len(state.nodes) - 1)
                state.unlinked += 1
        count = state.calls.get(name, 0) + 1
        state.calls[name] = count
        in_shape = tuple(ins[0].shape) if ins else ()
        geom = K.classify_module(module, state.ndim, in_shape, tuple(outs[0].shape))
        node = Node(
            name=name if count == 1 else f"{name}#{count}",
            type=type(module).__name__,
            geometry=geom,
            module=module,
            inputs=list(dict.fromkeys(inputs)),
            input_shapes=[tuple(t.shape) for t in ins],
            output_shape=tuple(outs[0].shape),
            outputs=outs,
            tensor_inputs=ins,
            params=list(module.parameters()),
            counter_macs=(state.counter.get_total_flops() - before) // 2,
            module_path=name.rsplit(".", 1)[0] if "." in name else "",
        )
        for t in outs:
            state.producer[id(t)] = len(state.nodes)
            state.keep.append(t)
        state.nodes.append(node)
        state.current = -1

    return hook


def capture_hooks(model: nn.Module, input_shape: tuple[int, ...], *, real: bool = False) -> Graph:
    """Run ``model`` (a meta copy) once with hooks on its leaf modules and record every call.

    ``real=True`` runs the model itself on a random CPU input without autograd, for models whose
    forward branches on tensor values (meta tensors have none): tensors saved for backward are then
    not measured.
    """
    if real:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.randn((1, *input_shape), device=device, dtype=model_dtype(model))
    else:
        x = meta_input(input_shape, model_dtype(model))
    counter = FlopCounterMode(display=False)
    state = _HookState(x, len(input_shape) - 1, counter)
    handles = []
    for name, m in _leaves(model):
        handles.append(m.register_forward_pre_hook(_pre(state, name)))
        handles.append(m.register_forward_hook(_post(state, name)))
    try:
        if real:
            with counter, torch.no_grad():
                model(x)
        else:
            with counter, saved_hooks(state), torch.device("meta"):
                model(x)
    except AnalysisError:
        raise
    except Exception as err:
        raise _hook_error(state, err) from err
    finally:
        for h in handles:
            h.remove()
    attach_saved(state.nodes, state.pending)
    graph = Graph(state.nodes, "hooks", len(input_shape) - 1)
    if state.unlinked:
        graph.notes.append(
            f"{state.unlinked} module input(s) came from functional ops the hooks cannot see; they are "
            "linked to the previous module, so receptive fields there follow call order"
        )
    return graph


def data_dependent(err: BaseException) -> bool:
    """True when a forward failed only because meta tensors carry no values."""
    cause = err.__cause__ or err
    text = str(cause)
    return "meta tensor" in text or "data-dependent" in text or "Cannot copy out of meta" in text


def _hook_error(state: _HookState, err: Exception) -> AnalysisError:
    reason = torch_reason(err)
    if state.open:
        name, module, shapes, _ = state.open[-1]
        reason = precheck(module, shapes) or reason
        return AnalysisError(
            f"layer {name!r} ({type(module).__name__}) fails on input shape(s) {shapes_text(shapes)}: "
            f"{reason} {CHECK_INPUT} or the layer's channels, kernel and stride."
        )
    last = state.nodes[-1]
    return AnalysisError(
        f"the model fails after layer {last.name!r} (output shape {shapes_text([last.output_shape])}), "
        f"in code between modules: {reason} {CHECK_INPUT}."
    )
