"""How an op moves the tensor axes: reshapes, permutes, reductions and indexing (crops), and the fallback
for ops cnnlab does not know (judged by the shapes alone).

:mod:`cnnlab.analysis.nodes` calls these for the modules and functions it classifies; receptive fields follow
the spatial axes through what they record (``Geometry.perm``, ``reduced``, ``CROP`` offsets).
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.analysis.geometry import COLLAPSE, CROP, ELEMENTWISE, UNKNOWN, Geometry, spatial


def reshape_geometry(nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """A reshape that keeps the trailing spatial axes is harmless; one that merges them is global."""
    if len(in_shape) >= nd + 2 and spatial(out_shape, nd) == spatial(in_shape, nd) and len(out_shape) >= nd + 2:
        return Geometry(ELEMENTWISE)
    if len(in_shape) < nd + 2:
        return Geometry(ELEMENTWISE)
    return Geometry(COLLAPSE)


def shape_geometry(nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """Fallback for ops we do not know: same grid -> elementwise; merged grid -> global; else unknown."""
    if len(in_shape) < nd + 2:
        return Geometry(ELEMENTWISE)
    if len(out_shape) >= nd + 2 and spatial(out_shape, nd) == spatial(in_shape, nd):
        return Geometry(ELEMENTWISE)
    if len(out_shape) < nd + 2 or all(v == 1 for v in spatial(out_shape, nd)):
        return Geometry(COLLAPSE)
    return Geometry(UNKNOWN)


def permutation(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], rank: int) -> tuple[int, ...]:
    """Output axis i = input axis perm[i] for permute/transpose/movedim; () when not understood."""
    try:
        rest = list(args[1:])
        if name == "permute":
            dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
            dims = kwargs.get("dims", dims)
            perm = tuple(int(d) % rank for d in dims)
        elif name == "t":
            perm = (1, 0) if rank == 2 else tuple(range(rank))
        elif name in ("movedim", "moveaxis"):
            src: Any = kwargs.get("source", rest[0] if rest else None)
            dst: Any = kwargs.get("destination", rest[1] if len(rest) > 1 else None)
            srcs = [int(v) % rank for v in (src if isinstance(src, (tuple, list)) else [src])]
            dsts = [int(v) % rank for v in (dst if isinstance(dst, (tuple, list)) else [dst])]
            order: list[int | None] = [None] * rank
            for a, b in zip(srcs, dsts):
                order[b] = a
            others = iter(d for d in range(rank) if d not in srcs)
            perm = tuple(v if v is not None else next(others) for v in order)
        else:  # transpose / swapaxes / swapdims
            d0 = int(kwargs.get("dim0", rest[0] if rest else 0)) % rank
            d1 = int(kwargs.get("dim1", rest[1] if len(rest) > 1 else 0)) % rank
            swapped = list(range(rank))
            swapped[d0], swapped[d1] = d1, d0
            perm = tuple(swapped)
    except (TypeError, ValueError, IndexError, StopIteration):
        return ()
    return perm if sorted(perm) == list(range(rank)) else ()


def reduction(
    args: tuple[Any, ...], kwargs: dict[str, Any], rank: int, n_tensor_inputs: int
) -> tuple[tuple[int, ...] | None, bool]:
    """The axes a mean/sum/max... reduces (all when no dim is given) and keepdim."""
    if n_tensor_inputs > 1 or rank == 0:
        return None, False  # torch.max(a, b) is elementwise
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 and isinstance(args[2], bool) else False))
    if dim is None:
        return tuple(range(rank)), keepdim
    dims = dim if isinstance(dim, (tuple, list)) else [dim]
    if not all(isinstance(d, int) for d in dims):
        return None, False
    return tuple(sorted({d % rank for d in dims})), keepdim


def getitem_geometry(args: tuple[Any, ...], nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """``x[..., a:b, c:d]`` crops the grid (U-Net skip crops); other indexing keeps it."""
    if not (isinstance(args[0], torch.Tensor) and len(in_shape) >= nd + 2):
        return Geometry(ELEMENTWISE)
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    if sum(i is Ellipsis for i in index) == 1:  # x[..., ::2, ::2]: the ellipsis stands for the leading axes
        at = index.index(Ellipsis)
        fill = len(in_shape) - (len(index) - 1 - sum(i is None for i in index))
        index = index[:at] + (slice(None),) * max(fill, 0) + index[at + 1 :]
    if any(i is Ellipsis or i is None or not isinstance(i, (slice, int)) for i in index):
        return shape_geometry(nd, in_shape, out_shape)
    if len(index) <= len(in_shape) - nd or any(isinstance(i, int) for i in index):
        return shape_geometry(nd, in_shape, out_shape)
    offsets, steps = [], []
    spatial_index = list(index[len(in_shape) - nd :]) + [slice(None)] * (len(in_shape) - len(index))
    for sl, n in zip(spatial_index, spatial(in_shape, nd)):
        start, _, step = sl.indices(n)
        offsets.append(start)
        steps.append(step)
    return Geometry(CROP, s=tuple(steps), offset=tuple(offsets))
