"""Activation memory: fresh output bytes per node, the inference peak, and what training keeps.

Inference: walking the graph in execution order, a node's output storage is allocated when it runs
and freed after its last consumer ran; views (flatten, chunk) and in-place ops (``ReLU(inplace=True)``)
allocate nothing. The peak is the largest sum of live storages. Training: the tensors autograd saves
for backward (recorded with ``torch.autograd.graph.saved_tensors_hooks``), each storage counted once,
parameters excluded. The model runs in eval mode, so dropout masks and BN batch statistics are not
included.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cnnlab.analysis.capture import Graph
from cnnlab.analysis.counts import tensor_bytes


@dataclass
class Memory:
    """Per-node fresh output bytes and saved-for-backward bytes, and the inference peak."""

    output_bytes: list[int]
    saved_bytes: list[int]
    peak_inference_bytes: int


def _owners(graph: Graph) -> tuple[dict[int, int], list[int]]:
    """Map id(tensor) -> index of the node owning its storage, and each node's fresh bytes."""
    owner: dict[int, int] = {}
    fresh = []
    model = graph.model
    # parameters and buffers are the model's own memory, not activations; views of them are free
    held = {id(t) for t in itertools.chain(model.parameters(), model.buffers())} if model is not None else set()
    for i, node in enumerate(graph.nodes):
        total = 0
        for t in node.outputs:
            alias = next((u for u in node.tensor_inputs if u is t), None)
            base = t._base if t._base is not None else None
            if id(t) in held or (base is not None and id(base) in held):
                continue
            if alias is not None and id(alias) in owner:
                owner[id(t)] = owner[id(alias)]
            elif base is not None and id(base) in owner:
                owner[id(t)] = owner[id(base)]
            elif base is not None and any(base is u or base is u._base for u in node.tensor_inputs):
                src = next(u for u in node.tensor_inputs if base is u or base is u._base)
                owner[id(t)] = owner.get(id(src), i)
            else:
                owner[id(t)] = i
                total += tensor_bytes(t)
        fresh.append(total)
    return owner, fresh


def measure(graph: Graph) -> Memory:
    """Output bytes, saved bytes and the inference peak of ``graph`` (batch as captured)."""
    owner, fresh = _owners(graph)
    n = len(graph.nodes)
    last_use = [n] * n  # never consumed: a model output, live to the end
    consumed = [False] * n
    for i, node in enumerate(graph.nodes):
        for t in node.tensor_inputs:
            o = owner.get(id(t))
            if o is not None:
                last_use[o] = i if not consumed[o] else max(last_use[o], i)
                consumed[o] = True
    live = peak = 0
    frees: dict[int, list[int]] = {}
    for o, last in enumerate(last_use):
        frees.setdefault(last, []).append(o)
    for i in range(n):
        live += fresh[i]
        peak = max(peak, live)
        for o in frees.get(i, []):
            live -= fresh[o]
    return Memory(fresh, _saved(graph), peak)


def _saved(graph: Graph) -> list[int]:
    """Bytes autograd keeps per node; a storage (a view's base, an in-place op's tensor) counts once."""
    seen: set[int] = set()
    out = []
    for node in graph.nodes:
        total = 0
        for t in node.saved:
            root = t._base if t._base is not None else t
            if id(root) not in seen:
                seen.add(id(root))
                total += tensor_bytes(root)
        out.append(total)
    return out
