"""Graph capture on the meta device: every leaf module call and functional op becomes a :class:`Node`.

The model is deep-copied with every parameter and buffer swapped for a storage-less meta tensor (the
weights' data are never copied), traced with :mod:`torch.fx` (leaf modules: ``torch.nn`` layers and
``cnnlab.layers``) and run node by node on a meta input, which gives exact shapes at zero compute.
Models that cannot be traced (data-dependent control flow) are captured with forward hooks on their
leaf modules instead (see :mod:`cnnlab.analysis.hooks`). Any failure names the layer where the shapes
break and the shapes it received (:class:`cnnlab.errors.AnalysisError`).
"""

from __future__ import annotations

import copy
import itertools
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import nodes as K
from cnnlab.analysis.nodes import Geometry
from cnnlab.errors import AnalysisError

# the advice every shape error ends with (Python callers pass input_shape, the CLI --input)
CHECK_INPUT = "Check the input shape (C,H,W: input_shape in Python, --input on the command line)"


@dataclass
class Node:
    """One executed op: a leaf-module call or a functional op, with shapes and its tensors."""

    name: str
    type: str
    geometry: Geometry
    module: nn.Module | None
    inputs: list[int]  # indices of the nodes producing its tensor inputs (0 = the model input)
    input_shapes: list[tuple[int, ...]]
    output_shape: tuple[int, ...]
    outputs: list[torch.Tensor] = field(default_factory=list)  # meta tensors (no storage)
    tensor_inputs: list[torch.Tensor] = field(default_factory=list)
    params: list[torch.Tensor] = field(default_factory=list)  # parameters it uses (module's or functional)
    counter_macs: int = 0  # multiply-adds FlopCounterMode saw (conv + matmul ops) / 2
    saved: list[torch.Tensor] = field(default_factory=list)  # tensors autograd keeps for backward
    module_path: str = ""  # the module that called it (for the --depth tree)


@dataclass
class Graph:
    """A captured model: nodes in execution order (node 0 is the input) and how they were captured."""

    nodes: list[Node]
    path: str  # "fx" or "hooks"
    ndim: int  # number of spatial axes
    notes: list[str] = field(default_factory=list)
    model: nn.Module | None = None  # the meta copy that ran


def is_leaf(m: nn.Module) -> bool:
    """torch.nn layers (not containers) and cnnlab.layers modules are leaves of the graph."""
    mod = type(m).__module__
    if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    return mod.startswith(("torch.nn", "torch.ao.nn", "cnnlab.layers"))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf(m)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        # a container built inside forward (``self.classifier[:-1](x)``) is not installed under a
        # name; trace through it: its children are installed and become nodes as usual
        if not is_leaf(m):
            try:
                self.path_of_module(m)
            except NameError:
                return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters, buffers and tensor attributes live on the meta device.

    The deepcopy memo is pre-filled with meta twins, so no weight data is ever copied; parameters
    that are shared stay shared in the copy.
    """
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        if id(t) in memo:
            continue
        if nn.parameter.is_lazy(t):
            # a lazy module's parameter: it stays lazy and materialises on the meta device at the first call
            param = isinstance(t, nn.Parameter)
            lazy = nn.parameter.UninitializedParameter if param else nn.parameter.UninitializedBuffer
            memo[id(t)] = lazy(requires_grad=t.requires_grad, device="meta")  # type: ignore[call-arg]  # __new__ takes it
            continue
        twin = torch.empty_like(t, device="meta")
        memo[id(t)] = (
            nn.Parameter(twin, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else twin
        )
    for m in model.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = torch.empty_like(value, device="meta")
    twin_model = copy.deepcopy(model, memo)
    return twin_model.eval()


def _fresh(like: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    out = torch.empty_like(like)
    return out.requires_grad_(requires_grad) if out.is_floating_point() else out


_SAVES_OUTPUT = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.ELU)  # autograd keeps the result
_SAVES_INPUT = (nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Mish)  # keeps the input


_ADAPTIVE_AVG = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)


def _adaptive_standin(x: torch.Tensor, output_size: Any, grad: bool) -> torch.Tensor:
    """Adaptive average pooling keeps only shapes for backward; (B, C, *in) -> (B, C, *out)."""
    nd = x.dim() - 2
    size = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * nd
    out_sp = [int(o) if o is not None else int(n) for o, n in zip(size, x.shape[2:])]
    out = torch.empty((*x.shape[:2], *out_sp), dtype=x.dtype)
    return out.requires_grad_(grad) if out.is_floating_point() else out


def standin_module(
    m: nn.Module, x: torch.Tensor, pending: list[tuple[int, torch.Tensor]], index: int
) -> torch.Tensor | None:
    """Shape-only stand-in for BN, activations, dropout, adaptive average pooling and linear layers.

    PyTorch runs these through Python decompositions on meta tensors (a few ms a call, most of the time
    of inspecting a ResNet), so they are replaced by ``empty_like`` and the tensor autograd would save
    for backward is filed by hand. Returns None for any other module. BatchNorm with the wrong channel
    count runs for real so PyTorch reports it.
    """
    grad = x.requires_grad or any(p.requires_grad for p in m.parameters())
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if x.dim() < 2 or x.shape[1] != m.num_features:
            return None
        pending.append((index, x))  # BN keeps its input for the backward pass
        return _fresh(x, grad)
    if isinstance(m, nn.modules.pooling._AdaptiveAvgPoolNd) and x.dim() >= 3:
        return _adaptive_standin(x, m.output_size, grad)
    if type(m) is nn.Linear and x.dim() >= 1 and x.shape[-1] == m.in_features:
        pending.append((index, x))  # the weight gradient needs the input
        out = torch.empty((*x.shape[:-1], m.out_features), dtype=x.dtype)  # (..., in) -> (..., out)
        return out.requires_grad_(grad)
    if isinstance(m, (nn.Identity, nn.modules.dropout._DropoutNd)):
        return x  # eval mode: the input itself
    inplace = bool(getattr(m, "inplace", False))
    if type(m) in _SAVES_OUTPUT:
        out = x if inplace else _fresh(x, grad)
        pending.append((index, out))
        return out
    if type(m) in _SAVES_INPUT and not inplace:
        pending.append((index, x))
        return _fresh(x, grad)
    return None


def torch_reason(err: BaseException) -> str:
    """PyTorch's message on one line, without the fx interpreter's "While executing ..." appendix.

    Errors other than PyTorch's usual RuntimeError/ValueError keep their type: a ``KeyError``'s message
    is only the key (``'head'``), which says nothing on its own.

    >>> torch_reason(KeyError("head"))
    "KeyError: 'head'."
    """
    text = " ".join(str(err).split("While executing")[0].split())
    if not isinstance(err, (RuntimeError, ValueError)) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if text.endswith((".", "!", "?")) else text + "."


def precheck(m: nn.Module, shapes: list[tuple[int, ...]]) -> str | None:
    """PyTorch-style reason for the common mismatches (the meta kernels' own messages are terse)."""
    if not shapes:
        return None
    x = shapes[0]
    if isinstance(m, nn.modules.conv._ConvNd) and len(x) >= 2 and x[1] != m.in_channels:
        weight = list(m.weight.shape)
        return (
            f"Given groups={m.groups}, weight of size {weight}, expected input{list(x)} to have "
            f"{m.in_channels} channels, but got {x[1]} channels instead."
        )
    if isinstance(m, nn.Linear) and x[-1] != m.in_features:
        return (
            f"expected the last axis to have in_features={m.in_features}, but the input has {x[-1]} "
            f"(mat1 and mat2 shapes cannot be multiplied ({'x'.join(map(str, x))} and "
            f"{m.in_features}x{m.out_features}))."
        )
    return None


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor inside a (nested) argument structure."""
    return [v for v in tree_flatten(value)[0] if isinstance(v, torch.Tensor)]


def shapes_text(shapes: list[tuple[int, ...]]) -> str:
    return ", ".join("(" + ", ".join(str(v) for v in s) + ")" for s in shapes) or "no tensors"


class _Recorder(fx.Interpreter):
    """Runs the traced graph on meta tensors and records one :class:`Node` per tensor-producing op."""

    def __init__(self, gm: fx.GraphModule, ndim: int) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.extra_traceback = False  # our errors already name the layer; keep them one paragraph
        self.ndim = ndim
        self.nodes: list[Node] = []
        self.row_of: dict[fx.Node, int] = {}
        self.current = -1
        self.names: dict[str, int] = {}
        self.pending: list[tuple[int, torch.Tensor]] = []  # (node index, tensor saved for backward)

    def run_node(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        self.current = len(self.nodes)
        # FlopCounterMode is slow (it decomposes BN and friends), so only ops that might hide a
        # matmul or convolution the arith formulas do not cover run under it
        count = n.op.startswith("call_") and not _free_of_matmul(n, self.module)
        try:
            if count:
                with FlopCounterMode(display=False) as counter:
                    out = getattr(self, n.op)(n.target, args, kwargs)
                counted = counter.get_total_flops() // 2
            else:
                out, counted = getattr(self, n.op)(n.target, args, kwargs), 0
        except AnalysisError:
            raise
        except Exception as err:
            raise self._error(n, args, kwargs, err) from err
        if n.op == "placeholder" and not self.nodes and isinstance(out, torch.Tensor):
            self._record(n, "input", "Input", None, K.Geometry(K.INPUT), [], out, [], 0)
        elif n.op in ("call_module", "call_function", "call_method") and tensors_in(out):
            self._record_call(n, args, kwargs, out, counted)
        return out

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        module = self.module.get_submodule(str(target))
        if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
            out = standin_module(module, args[0], self.pending, self.current)
            if out is not None:
                return out
        return super().call_module(target, args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target in (operator.add, operator.iadd, torch.add) and len(args) == 2 and not kwargs:
            a, b = args
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape:
                if target is operator.iadd:
                    return a  # in place: the result is the left operand
                return _fresh(a, a.requires_grad or b.requires_grad)  # add saves nothing for backward
        if target in (F.relu, torch.relu, torch.relu_) and args and isinstance(args[0], torch.Tensor):
            inplace = target is torch.relu_ or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            return self._relu(args[0], inplace)
        if target in _ADAPTIVE_AVG and len(args) == 2 and not kwargs and isinstance(args[0], torch.Tensor):
            x = args[0]
            if x.dim() >= 3:  # meta adaptive_avg_pool runs PyTorch's Python reference, as relu does
                return _adaptive_standin(x, args[1], x.requires_grad)
        return super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target in ("relu", "relu_") and len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
            return self._relu(args[0], target == "relu_")
        return super().call_method(target, args, kwargs)

    def _relu(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        """``F.relu`` as nn.ReLU's stand-in: on meta tensors PyTorch runs relu through its Python
        reference, whose first call imports torch._dynamo (about 1 s of ``cnnlab inspect resnet50``)."""
        out = x if inplace else _fresh(x, x.requires_grad)
        self.pending.append((self.current, out))  # relu's backward reads its result
        return out

    def _error(self, n: fx.Node, args: Any, kwargs: Any, err: Exception) -> AnalysisError:
        if n.op == "placeholder":  # forward() has a second input without a default
            inputs = [str(p.target) for p in self.graph.nodes if p.op == "placeholder"]
            return AnalysisError(
                f"the model's forward({', '.join(inputs)}) takes {len(inputs)} inputs, but cnnlab analyses a "
                f"model on one tensor (the input shape; received no value for {str(n.target)!r}). Give the other "
                "parameters defaults, or wrap the model in a module whose forward(x) builds them from x."
            )
        shapes = [tuple(t.shape) for t in tensors_in((args, kwargs)) if not isinstance(t, nn.Parameter)]
        where = self._name(n, register=False)
        kind = (
            type(self.module.get_submodule(str(n.target))).__name__
            if n.op == "call_module"
            else K.op_name(n.target)
        )
        reason = torch_reason(err)
        if n.op == "call_module":
            reason = precheck(self.module.get_submodule(str(n.target)), shapes) or reason
        return AnalysisError(
            f"layer {where!r} ({kind}) fails on input shape(s) {shapes_text(shapes)}: {reason} "
            f"{CHECK_INPUT} or the layer's channels, kernel and stride."
        )

    def _name(self, n: fx.Node, register: bool = True) -> str:
        if n.op == "call_module":
            base = str(n.target)
        else:
            stack = n.meta.get("nn_module_stack") or {}
            prefix = list(stack.values())[-1][0] if stack else ""
            op = K.op_name(n.target)
            base = f"{prefix}.{op}" if prefix else op
        count = self.names.get(base, 0)
        if register:
            self.names[base] = count + 1
        return base if count == 0 else (f"{base}#{count + 1}" if n.op == "call_module" else f"{base}_{count}")

    def _record_call(self, n: fx.Node, args: Any, kwargs: Any, out: Any, counted: int) -> None:
        ins = [t for t in tensors_in((args, kwargs)) if not isinstance(t, nn.Parameter)]
        in_shape = tuple(ins[0].shape) if ins else ()
        out_shape = tuple(tensors_in(out)[0].shape)
        if n.op == "call_module":
            module = self.module.get_submodule(str(n.target))
            geom = K.classify_module(module, self.ndim, in_shape, out_shape)
            params: list[torch.Tensor] = list(module.parameters())
            type_name = type(module).__name__
            path = str(n.target)
        else:
            module = None
            name = K.op_name(n.target)
            geom = K.classify_function(
                name, tuple(args), dict(kwargs), self.ndim, in_shape, out_shape, len(ins)
            )
            params = [t for t in tensors_in((args, kwargs)) if isinstance(t, nn.Parameter)]
            type_name = name
            stack = n.meta.get("nn_module_stack") or {}
            path = list(stack.values())[-1][0] if stack else ""
        self._record(n, self._name(n), type_name, module, geom, ins, out, params, counted, path)

    def _record(
        self,
        n: fx.Node,
        name: str,
        type_name: str,
        module: nn.Module | None,
        geom: Geometry,
        ins: list[torch.Tensor],
        out: Any,
        params: list[torch.Tensor],
        counted: int,
        path: str = "",
    ) -> None:
        inputs = list(dict.fromkeys(self.row_of[a] for a in n.all_input_nodes if a in self.row_of))
        node = Node(
            name=name,
            type=type_name,
            geometry=geom,
            module=module,
            inputs=inputs,
            input_shapes=[tuple(t.shape) for t in ins],
            output_shape=tuple(tensors_in(out)[0].shape),
            outputs=tensors_in(out),
            tensor_inputs=ins,
            params=params,
            counter_macs=counted,
            module_path=path,
        )
        self.row_of[n] = len(self.nodes)
        self.nodes.append(node)


def _free_of_matmul(n: fx.Node, root: nn.Module) -> bool:
    """True for ops known to contain no convolution or matmul beyond what the arith formulas count."""
    if n.op == "call_module":
        return K.module_is_simple(root.get_submodule(str(n.target)))
    return K.op_name(n.target).rstrip("_") in K.SIMPLE_FUNCTIONS


def saved_hooks(rec: Any) -> Any:
    """autograd's saved-tensor hooks: every tensor kept for backward is filed under the running node."""

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, nn.Parameter) and rec.current >= 0:
            rec.pending.append((rec.current, t))
        return t

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


def attach_saved(nodes: list[Node], pending: list[tuple[int, torch.Tensor]]) -> None:
    for index, t in pending:
        if index < len(nodes):
            nodes[index].saved.append(t)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype the model computes in: its first floating parameter's (or buffer's), else the default."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point() and not nn.parameter.is_lazy(t):
            return t.dtype
    return torch.get_default_dtype()


def meta_input(input_shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
    """A batch-1 meta tensor (1, *input_shape); ``dtype`` is the model's (a float64 model gets float64)."""
    return torch.empty((1, *input_shape), device="meta", dtype=dtype)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model`` (already a meta copy) with cnnlab's leaf rule."""
    tracer = _Tracer()
    graph = tracer.trace(model)
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    # tensors built in forward() without an input (``torch.ones(1, C, 1, 1)``) were evaluated during
    # tracing and stored as CPU constants; the meta run needs them on the meta device
    for node in gm.graph.nodes:
        if node.op != "get_attr":
            continue
        owner_path, _, attr = str(node.target).rpartition(".")
        owner = gm.get_submodule(owner_path)
        value = getattr(owner, attr, None)
        if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and not value.is_meta:
            setattr(owner, attr, torch.empty_like(value, device="meta"))
    return gm


def capture_fx(model: nn.Module, input_shape: tuple[int, ...], gm: fx.GraphModule | None = None) -> Graph:
    """Capture ``model`` (a meta copy) through torch.fx; raises the tracer's own error when untraceable."""
    gm = gm if gm is not None else trace(model)
    ndim = len(input_shape) - 1
    rec = _Recorder(gm, ndim)
    with saved_hooks(rec), torch.device("meta"):
        rec.run(meta_input(input_shape, model_dtype(model)))
    attach_saved(rec.nodes, rec.pending)
    return Graph(rec.nodes, "fx", ndim)


def capture(model: nn.Module, input_shape: tuple[int, ...]) -> Graph:
    """Capture ``model`` at ``input_shape`` (C, *spatial): fx first, forward hooks if tracing fails."""
    from cnnlab.analysis.hooks import capture_hooks, data_dependent

    twin = meta_copy(model)
    if any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in twin.modules()):
        _initialise_lazy(twin, input_shape)
    try:
        gm = trace(twin)
    except Exception as err:  # tracing failures come in many types (TraceError, TypeError, ...)
        try:
            graph = capture_hooks(twin, input_shape)
            graph.model = twin
        except AnalysisError as meta_err:
            if not data_dependent(meta_err):
                raise
            graph = capture_hooks(model, input_shape, real=True)
            graph.model = model
            graph.notes.append(
                "forward() branches on tensor values, so the model ran once on a random CPU input "
                "(training memory is not measured on this path)"
            )
        reason = " ".join(str(err).split())[:200]
        graph.notes.append(
            f"torch.fx could not trace the model ({type(err).__name__}: {reason}); "
            "captured with forward hooks on leaf modules, functional ops are not rows"
        )
        return graph
    graph = capture_fx(twin, input_shape, gm)
    graph.model = twin
    return graph


def _initialise_lazy(twin: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Run the meta copy once so lazy modules (``nn.LazyLinear``) infer their shapes, as PyTorch asks."""
    from cnnlab.analysis.hooks import capture_hooks

    try:
        with torch.no_grad(), torch.device("meta"):
            twin(meta_input(input_shape, model_dtype(twin)))
    except Exception as err:
        capture_hooks(twin, input_shape)  # raises an AnalysisError naming the layer and its input shapes
        shape = shapes_text([(1, *input_shape)])
        raise AnalysisError(f"the model fails on input shape {shape}: {torch_reason(err)}") from err


def input_dependent(graph: Graph) -> list[bool]:
    """Per node: does its output depend on the model input (False for parameter/constant-only ops)?"""
    variable: list[bool] = []
    for i, node in enumerate(graph.nodes):
        variable.append(i == 0 or any(variable[j] for j in node.inputs))
    return variable


# ops whose values do not depend on their input's values (only on its shape): they see no pixel
CONSTANT_LIKE = (
    "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like", "randint_like",
    "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor",
)  # fmt: skip


def reaches_input(graph: Graph) -> list[bool]:
    """Per node: does its output read the model input's values? As :func:`input_dependent`, but
    ``zeros_like(x)`` and its kin are constants (``cat([y, zeros_like(y)])`` pads ``y`` with zeros)."""
    variable: list[bool] = []
    for i, node in enumerate(graph.nodes):
        constant = node.type.rstrip("_") in CONSTANT_LIKE
        variable.append(i == 0 or (not constant and any(variable[j] for j in node.inputs)))
    return variable


def iter_calls(graph: Graph) -> Iterator[tuple[int, Node]]:
    """Nodes after the input, with their index."""
    yield from ((i, n) for i, n in enumerate(graph.nodes) if i > 0)
