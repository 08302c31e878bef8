"""What each graph node does to the spatial grid: its op class and geometry (kernel, stride, padding).

Modules are classified with ``isinstance`` against torch's own base classes (never by class-name
substrings); functional ops (``F.conv2d``, ``torch.cat``, ``x.view``) by the function's name and
bound arguments. The result drives MAC counting, receptive fields and the lint rules.

The op classes and :class:`~cnnlab.analysis.geometry.Geometry` are defined in :mod:`cnnlab.analysis.geometry`
and importable from here; upsampling and padding modes are read by :mod:`cnnlab.analysis.resample`, how
reshapes, permutes, reductions and indexing move the tensor axes by :mod:`cnnlab.analysis.axes`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch.nn as nn
from torch.nn.modules import conv as _conv
from torch.nn.modules import pooling as _pool

from cnnlab.analysis.axes import getitem_geometry, permutation, reduction, reshape_geometry, shape_geometry
from cnnlab.analysis.geometry import (
    ADAPTIVE,
    ATTENTION,
    COLLAPSE,
    CONV,
    CONV_T,
    CROP,
    DROPOUT,
    ELEMENTWISE,
    INPUT,
    LINEAR,
    MATMUL,
    MERGE,
    NORM,
    PAD,
    POOL,
    UNKNOWN,
    UPSAMPLE,
    Geometry,
    Pairs,
    per_axis,
    spatial,
)
from cnnlab.analysis.resample import PAD_MODES, pad_geometry, upsample_geometry

# the op classes and Geometry live in geometry; they are imported from here too (``nodes as K``)
__all__ = [
    "ADAPTIVE",
    "ATTENTION",
    "COLLAPSE",
    "CONV",
    "CONV_T",
    "CROP",
    "DROPOUT",
    "ELEMENTWISE",
    "INPUT",
    "LINEAR",
    "MATMUL",
    "MERGE",
    "NORM",
    "PAD",
    "POOL",
    "SIMPLE_FUNCTIONS",
    "UNKNOWN",
    "UPSAMPLE",
    "Geometry",
    "Pairs",
    "classify_function",
    "classify_module",
    "module_is_simple",
    "op_name",
]


def _pairs(p: Any, k: tuple[int, ...], d: tuple[int, ...]) -> tuple[Pairs, bool]:
    """(left, right) per axis; PyTorch's 'same' puts the odd extra pixel on the right."""
    nd = len(k)
    if p == "valid":
        return ((0, 0),) * nd, False
    if p == "same":
        totals = [di * (ki - 1) for ki, di in zip(k, d)]
        return tuple((t // 2, t - t // 2) for t in totals), True
    sym = per_axis(p, nd)
    return tuple((v, v) for v in sym), False


def classify_module(m: nn.Module, nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """Geometry of a leaf module call (``in_shape``/``out_shape`` include the batch axis)."""
    if isinstance(m, _conv._ConvNd):
        nd = len(m.kernel_size)  # a Conv1d inside a 2-D net keeps its own axes
    if isinstance(m, _conv._ConvTransposeNd):
        k, s, d = per_axis(m.kernel_size, nd), per_axis(m.stride, nd), per_axis(m.dilation, nd)
        pad = per_axis(m.padding, nd)
        return Geometry(
            CONV_T,
            k,
            s,
            tuple((v, v) for v in pad),
            d,
            m.groups,
            bias=m.bias is not None,
            in_ch=m.in_channels,
            out_ch=m.out_channels,
        )
    if isinstance(m, _conv._ConvNd):
        k, s, d = per_axis(m.kernel_size, nd), per_axis(m.stride, nd), per_axis(m.dilation, nd)
        pairs, same = _pairs(m.padding, k, d)
        if callable(getattr(m, "padding_pairs", None)):  # cnnlab.layers convs: TF 'same' at stride > 1, (l, r) pairs
            applied = m.padding_pairs(spatial(in_shape, nd))  # type: ignore[operator]
            pairs = tuple((int(a), int(b)) for a, b in applied)
            same = same or bool(getattr(m, "dynamic_same", False))
        return Geometry(
            CONV,
            k,
            s,
            pairs,
            d,
            m.groups,
            same=same,
            bias=m.bias is not None,
            in_ch=m.in_channels,
            out_ch=m.out_channels,
            pad_mode=str(getattr(m, "padding_mode", "zeros")),
        )
    if isinstance(m, nn.Linear):
        return Geometry(LINEAR, bias=m.bias is not None, in_ch=m.in_features, out_ch=m.out_features)
    if isinstance(m, nn.Bilinear):  # in_ch: the first input's features (counts.node_macs reads the second's)
        return Geometry(LINEAR, bias=m.bias is not None, in_ch=m.in1_features, out_ch=m.out_features)
    if isinstance(m, (_pool._MaxPoolNd, _pool._AvgPoolNd, _pool._LPPoolNd)):
        k = per_axis(m.kernel_size, nd)
        s = per_axis(m.stride if m.stride else m.kernel_size, nd)
        pad = per_axis(getattr(m, "padding", 0), nd)
        d = per_axis(getattr(m, "dilation", 1), nd)
        return Geometry(POOL, k, s, tuple((v, v) for v in pad), d, ceil_mode=bool(m.ceil_mode))
    if isinstance(m, (_pool._AdaptiveAvgPoolNd, _pool._AdaptiveMaxPoolNd)):
        return Geometry(ADAPTIVE)
    if isinstance(m, _pool._MaxUnpoolNd):
        k, s = per_axis(m.kernel_size, nd), per_axis(m.stride, nd)
        pad = per_axis(m.padding, nd)
        return Geometry(CONV_T, k, s, tuple((v, v) for v in pad), (1,) * nd)
    if isinstance(m, nn.Upsample):
        return upsample_geometry(
            nd, in_shape, out_shape, m.mode, m.scale_factor, m.align_corners, m.recompute_scale_factor
        )
    if isinstance(m, nn.PixelShuffle):  # output unit o comes from input unit floor(o / r), as nearest
        return upsample_geometry(nd, in_shape, out_shape, "nearest")
    if isinstance(m, nn.PixelUnshuffle):
        r = (int(m.downscale_factor),) * nd
        return Geometry(POOL, r, r, ((0, 0),) * nd, (1,) * nd)
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        return replace(reshape_geometry(nd, in_shape, out_shape), reshape=True)
    if isinstance(m, nn.Softmax | nn.LogSoftmax | nn.Softmin) and m.dim is not None and in_shape:
        return Geometry(ELEMENTWISE, mixed=(m.dim % len(in_shape),))
    if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)):
        return Geometry(NORM)
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return Geometry(DROPOUT)
    if isinstance(
        m,
        nn.modules.padding._ConstantPadNd
        | nn.modules.padding._ReflectionPadNd
        | nn.modules.padding._ReplicationPadNd
        | nn.modules.padding._CircularPadNd,
    ):
        mode = next(name for base, name in PAD_MODES if isinstance(m, base))
        return pad_geometry(m.padding, nd, mode)
    if isinstance(m, nn.MultiheadAttention):  # lives in torch.nn.modules.activation, but is no activation
        return Geometry(ATTENTION, groups=m.num_heads, bias=m.in_proj_bias is not None, in_ch=m.embed_dim)
    if type(m).__module__.startswith("torch.nn.modules.activation") or isinstance(m, nn.Identity):
        return Geometry(ELEMENTWISE)
    return shape_geometry(nd, in_shape, out_shape)


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONVT_ARGS = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
_AVG_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode")
_INTERPOLATE_ARGS = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
_MERGE = {
    "add",
    "iadd",
    "sub",
    "isub",
    "mul",
    "imul",
    "truediv",
    "div",
    "cat",
    "concat",
    "concatenate",
    "stack",
    "where",
    "maximum",
    "minimum",
    "addcmul",
}
_RESHAPE = {"flatten", "unflatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "view_as", "reshape_as"}
_PERMUTE = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t"}
_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp", "std", "var"}


_SIMPLE_MODULES: tuple[type[nn.Module], ...] = (
    _conv._ConvNd,
    nn.Linear,
    nn.Bilinear,
    _pool._MaxPoolNd,
    _pool._AvgPoolNd,
    _pool._AdaptiveAvgPoolNd,
    _pool._AdaptiveMaxPoolNd,
    _pool._MaxUnpoolNd,
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.dropout._DropoutNd,
    nn.Upsample,
    nn.Flatten,
    nn.Identity,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
)
SIMPLE_FUNCTIONS = (
    _MERGE
    | _RESHAPE
    | _PERMUTE
    | _REDUCE
    | {
        "getitem",
        "getattr",
        "relu",
        "relu6",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "hardswish",
        "hardsigmoid",
        "leaky_relu",
        "elu",
        "softmax",
        "log_softmax",
        "interpolate",
        "pad",
        "dropout",
        "batch_norm",
        "size",
        "chunk",
        "split",
        "neg",
        "exp",
        "clamp",
        "abs",
        "sqrt",
        "pow",
        "float",
        "to",
        "type_as",
        "adaptive_avg_pool2d",
        "adaptive_max_pool2d",
        "max_pool2d",
        "avg_pool2d",
        "max_pool1d",
        "avg_pool1d",
        "max_pool3d",
        "avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool3d",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "linear",
    }
)


def module_is_simple(m: nn.Module) -> bool:
    """torch.nn layers whose MACs the arith formulas give exactly (or that have none)."""
    return isinstance(m, _SIMPLE_MODULES) or type(m).__module__.startswith("torch.nn.modules.activation")


def _bind(names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


# ops that move units along an axis without mixing them: a flip reverses it, roll shifts it around the end
_REORDER = ("flip", "fliplr", "flipud", "roll", "rot90")


def _reordered(base: str, args: tuple[Any, ...], kwargs: dict[str, Any], rank: int) -> tuple[int, ...]:
    """The tensor axes whose units ``flip``/``roll``/``rot90`` move (every axis when not understood)."""
    fixed = {"fliplr": (1,), "flipud": (0,)}
    if base in fixed:
        return fixed[base]
    at = 1 if base == "flip" else 2  # flip(x, dims), roll(x, shifts, dims), rot90(x, k, dims=(0, 1))
    dims = kwargs.get("dims", args[at] if len(args) > at else (0, 1) if base == "rot90" else None)
    if isinstance(dims, int):
        dims = (dims,)
    if not isinstance(dims, (tuple, list)) or not all(isinstance(d, int) for d in dims):
        return tuple(range(rank))  # roll without dims shifts the flattened tensor: every axis
    return tuple(d % rank for d in dims)


def op_name(target: Any) -> str:
    """``F.conv2d`` -> "conv2d", ``operator.add`` -> "add", "view" (a method name) -> "view"."""
    if isinstance(target, str):
        return target
    return str(getattr(target, "__name__", target)).lstrip("_")


def classify_function(
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    nd: int,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    n_tensor_inputs: int,
) -> Geometry:
    """Geometry of a functional op or tensor method (``name`` as from :func:`op_name`)."""
    base = name.rstrip("_")
    if base in (f"conv{nd}d", "convolution") and len(args) > 1:
        b = _bind(_CONV_ARGS, args, kwargs)
        w = b["weight"]
        k, s, d = (
            tuple(int(v) for v in w.shape[2:]),
            per_axis(b.get("stride", 1), nd),
            per_axis(b.get("dilation", 1), nd),
        )
        pairs, same = _pairs(b.get("padding", 0), k, d)
        g = int(b.get("groups", 1))
        return Geometry(
            CONV,
            k,
            s,
            pairs,
            d,
            g,
            same=same,
            bias=b.get("bias") is not None,
            in_ch=int(w.shape[1]) * g,
            out_ch=int(w.shape[0]),
        )
    if base == f"conv_transpose{nd}d":
        b = _bind(_CONVT_ARGS, args, kwargs)
        w = b["weight"]
        k, s, d = (
            tuple(int(v) for v in w.shape[2:]),
            per_axis(b.get("stride", 1), nd),
            per_axis(b.get("dilation", 1), nd),
        )
        pad = per_axis(b.get("padding", 0), nd)
        g = int(b.get("groups", 1))
        return Geometry(
            CONV_T,
            k,
            s,
            tuple((v, v) for v in pad),
            d,
            g,
            bias=b.get("bias") is not None,
            in_ch=int(w.shape[0]),
            out_ch=int(w.shape[1]) * g,
        )
    if base == "linear":
        b = _bind(("input", "weight", "bias"), args, kwargs)
        w = b["weight"]
        return Geometry(LINEAR, bias=b.get("bias") is not None, in_ch=int(w.shape[1]), out_ch=int(w.shape[0]))
    if base in ("matmul", "mm", "bmm", "einsum"):
        return Geometry(MATMUL)
    if base in (f"max_pool{nd}d", f"max_pool{nd}d_with_indices", f"avg_pool{nd}d", f"lp_pool{nd}d"):
        b = _bind(_AVG_ARGS if base.startswith("avg") else _POOL_ARGS, args, kwargs)
        k = per_axis(b["kernel_size"], nd)
        s = per_axis(b.get("stride") or b["kernel_size"], nd)
        pad = per_axis(b.get("padding", 0), nd)
        return Geometry(
            POOL,
            k,
            s,
            tuple((v, v) for v in pad),
            per_axis(b.get("dilation", 1), nd),
            ceil_mode=bool(b.get("ceil_mode", False)),
        )
    if base.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
        return Geometry(ADAPTIVE)
    if base in ("interpolate", "upsample"):
        b = _bind(_INTERPOLATE_ARGS, args, kwargs)
        if b.get("antialias"):  # a downsampling window that grows with the scale: not followed
            return Geometry(UNKNOWN)
        return upsample_geometry(
            nd, in_shape, out_shape, str(b.get("mode", "nearest")), b.get("scale_factor"),
            b.get("align_corners"), b.get("recompute_scale_factor"),
        )  # fmt: skip
    if base in ("upsample_nearest", "pixel_shuffle"):
        return upsample_geometry(nd, in_shape, out_shape, "nearest")
    if base == "upsample_bilinear":  # deprecated F.upsample_bilinear: align_corners=True
        return upsample_geometry(nd, in_shape, out_shape, "bilinear", align_corners=True)
    if base == "pad":
        b = _bind(("input", "pad", "mode", "value"), args, kwargs)
        return pad_geometry(b.get("pad", 0), nd, str(b.get("mode") or "constant"))
    if base == "getitem":
        return getitem_geometry(args, nd, in_shape, out_shape)
    if base in _MERGE and n_tensor_inputs > 1:
        return Geometry(MERGE)
    if base in _RESHAPE:
        return replace(reshape_geometry(nd, in_shape, out_shape), reshape=True)
    if base in _PERMUTE:
        perm = permutation(base, args, kwargs, len(in_shape))
        if not perm:
            return shape_geometry(nd, in_shape, out_shape)
        return replace(reshape_geometry(nd, in_shape, out_shape), perm=perm)
    if base in _REDUCE:
        reduced, keepdim = reduction(args, kwargs, len(in_shape), n_tensor_inputs)
        return replace(reshape_geometry(nd, in_shape, out_shape), reduced=reduced, keepdim=keepdim)
    if base in ("softmax", "log_softmax", "softmin") and in_shape:
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if isinstance(dim, int):
            return Geometry(ELEMENTWISE, mixed=(dim % len(in_shape),))
    if base in _REORDER:
        return Geometry(ELEMENTWISE, reordered=_reordered(base, args, kwargs, len(in_shape)))
    if base in ("dropout", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"):
        return Geometry(DROPOUT)
    if base in ("batch_norm", "group_norm", "layer_norm", "instance_norm"):
        return Geometry(NORM)
    return shape_geometry(nd, in_shape, out_shape)
