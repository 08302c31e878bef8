"""Parameters, MACs and LeCun's 'connections' per node.

Parameters are attributed to the first node that applies them to the data (a ``w.view(1, C, 1, 1)``
computed from the parameter alone hands it to the ``mul`` that uses the view), so a shared parameter
is counted once and the column sums to ``sum(p.numel())``. MACs of convolution, transposed
convolution, linear and bilinear layers come from :mod:`cnnlab.arith`; ``nn.MultiheadAttention`` counts its
q/k/v/output projections plus ``QK^T`` and ``AV`` (:func:`attention_macs`: softmax, scaling and masks
are not counted, as PyTorch's FlopCounterMode does not count them either); any other op (a functional
``matmul``, an unknown leaf module) gets the conv/matmul multiply-adds that
``torch.utils.flop_counter.FlopCounterMode`` saw while it ran.
"""

from __future__ import annotations

import math

import torch

from cnnlab.analysis import nodes as K
from cnnlab.analysis.capture import Graph, Node, input_dependent
from cnnlab.arith import bilinear_macs, conv_macs, conv_transpose_macs, linear_macs


def applied_params(graph: Graph) -> list[list[torch.Tensor]]:
    """Per node, the parameters it applies to the data: its own, plus those that reach it through
    nodes computed from parameters alone.

    LeNet-5's subsampling computes ``x * self.weight.view(1, -1, 1, 1)``: the ``view`` sees no pixel
    (receptive field ``-``), the ``mul`` is where the coefficients act on the map.
    """
    variable = input_dependent(graph)
    carried: list[list[torch.Tensor]] = []
    for node in graph.nodes:
        # an operand computed from parameters alone passes its parameters on
        passed = [p for j in node.inputs if not variable[j] for p in carried[j]]
        carried.append([*node.params, *passed])
    return [ps if variable[i] else [] for i, ps in enumerate(carried)]


def node_params(graph: Graph) -> list[tuple[int, int]]:
    """(params, trainable params) per node; a parameter used by several nodes counts at its first use.

    The use is the first node that applies it to the data (:func:`applied_params`); a parameter that
    never meets the data stays on the first node that reads it.
    """
    applied = applied_params(graph)
    owner: dict[int, tuple[int, torch.Tensor]] = {}
    for i, params in enumerate(applied):
        for p in params:
            owner.setdefault(id(p), (i, p))
    for i, node in enumerate(graph.nodes):
        for p in node.params:
            owner.setdefault(id(p), (i, p))
    out = [(0, 0)] * len(graph.nodes)
    for i, p in owner.values():
        total, trainable = out[i]
        out[i] = (total + p.numel(), trainable + (p.numel() if p.requires_grad else 0))
    return out


def unused_params(graph: Graph) -> tuple[int, int]:
    """Parameters of the captured model the forward pass never touched (still in ``sum(p.numel())``)."""
    if graph.model is None:
        return 0, 0
    model = graph.model
    used = {id(p) for node in graph.nodes for p in node.params}
    total = trainable = 0
    for p in model.parameters():
        if id(p) not in used:
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def node_macs(node: Node) -> int:
    """Multiply-adds of one node (batch included): arith formulas for conv/linear, else FlopCounterMode's."""
    g = node.geometry
    batch = node.output_shape[0] if node.output_shape else 1
    if g.kind == K.CONV and g.in_ch:
        out_size = node.output_shape[-len(g.k) :]
        # (B, C_out, *out) positions x (C_in / groups) x prod(k)
        return batch * conv_macs(g.in_ch, g.out_ch, g.k, out_size, g.groups, ndim=len(g.k))
    if g.kind == K.CONV_T and g.in_ch:
        in_size = node.input_shapes[0][-len(g.k) :]
        return batch * conv_transpose_macs(g.in_ch, g.out_ch, g.k, in_size, g.groups, ndim=len(g.k))
    if g.kind == K.ATTENTION and node.input_shapes:
        return attention_macs(node)
    if g.kind == K.LINEAR and g.in_ch:
        positions = math.prod(node.output_shape[:-1])  # (..., out_f): every leading index is a position
        if isinstance(node.module, torch.nn.Bilinear):  # FlopCounterMode does not see torch.bilinear
            return bilinear_macs(g.in_ch, int(node.module.in2_features), g.out_ch, positions)
        return linear_macs(g.in_ch, g.out_ch, positions)
    return node.counter_macs


def attention_macs(node: Node) -> int:
    """MACs of one ``nn.MultiheadAttention`` call: projections + ``QK^T`` + ``AV``, over every head.

    With ``L`` queries, ``S`` keys, embedding ``E`` and batch ``N``:
    ``N * (L*E*E + S*kdim*E + S*vdim*E  +  L*S*E  +  L*S*E  +  L*E*E)``.
    The fused inference path PyTorch takes in eval mode hides these from FlopCounterMode.
    """
    m = node.module
    if not isinstance(m, torch.nn.MultiheadAttention):
        return node.counter_macs
    q = node.input_shapes[0]
    k = node.input_shapes[1] if len(node.input_shapes) > 1 else q
    if len(q) == 2:  # unbatched: (L, E)
        batch, length, keys = 1, q[0], k[0]
    elif m.batch_first:  # (N, L, E)
        batch, length, keys = q[0], q[1], k[1]
    else:  # (L, N, E)
        batch, length, keys = q[1], q[0], k[0]
    e, kdim, vdim = int(m.embed_dim), int(m.kdim), int(m.vdim)
    projections = length * e * e + keys * kdim * e + keys * vdim * e + length * e * e
    attention = 2 * length * keys * e  # QK^T and AV: per head L*S*(E/heads), summed over the heads
    return batch * (projections + attention)


def node_connections(node: Node, macs: int) -> int:
    """MACs plus one bias addition per output value (the 1998 LeNet-5 paper's 'connections')."""
    g = node.geometry
    if g.bias and g.kind in (K.CONV, K.CONV_T, K.LINEAR):
        return macs + math.prod(node.output_shape)
    return macs


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
