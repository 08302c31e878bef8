"""What each graph node does to the spatial grid: its op class and geometry (kernel, stride, padding).

Modules are classified with ``isinstance`` against torch's own base classes (never by class-name
substrings); functional ops (``F.conv2d``, ``torch.cat``, ``x.view``) by the function's name and
bound arguments. The result drives MAC counting, receptive fields and the lint rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules import conv as _conv
from torch.nn.modules import pooling as _pool

Pairs = tuple[tuple[int, int], ...]

# op classes (Geometry.kind)
CONV, CONV_T, LINEAR, POOL, ADAPTIVE, UPSAMPLE, PAD, CROP = (
    "conv",
    "conv_transpose",
    "linear",
    "pool",
    "adaptive_pool",
    "upsample",
    "pad",
    "crop",
)
ATTENTION = "attention"  # nn.MultiheadAttention: mixes the whole sequence and the embedding
MERGE, ELEMENTWISE, NORM, DROPOUT, COLLAPSE, INPUT, UNKNOWN, MATMUL = (
    "merge",
    "elementwise",
    "norm",
    "dropout",
    "collapse",
    "input",
    "unknown",
    "matmul",
)


@dataclass(frozen=True)
class Geometry:
    """How one op maps its input grid to its output grid (per spatial axis)."""

    kind: str
    k: tuple[int, ...] = ()
    s: tuple[int, ...] = ()
    p: Pairs = ()
    d: tuple[int, ...] = ()
    groups: int = 1
    ceil_mode: bool = False
    same: bool = False  # padding='same' was requested
    scale: tuple[float, ...] = ()  # upsample factor per axis: output units per input unit, as PyTorch reads it
    mode: str = "nearest"  # upsampling: nearest, nearest-exact, bilinear (any linear) or bicubic
    align_corners: bool = False  # upsampling: unit o reads o/scale, scale = (m-1)/(n-1)
    pad_mode: str = "zeros"  # conv and padding: zeros, reflect, replicate or circular
    offset: tuple[int, ...] = ()  # crop: first kept index per axis
    bias: bool = False
    in_ch: int = 0
    out_ch: int = 0
    # how the op moves or mixes tensor axes (receptive fields follow the spatial axes through them)
    perm: tuple[int, ...] = ()  # permute/transpose/movedim: output axis i is input axis perm[i]
    reshape: bool = False  # view/reshape/flatten/unflatten/(un)squeeze: same elements, row-major order
    reduced: tuple[int, ...] | None = None  # reduction over these input axes (None: not a reduction)
    keepdim: bool = False
    mixed: tuple[int, ...] = ()  # every output along these input axes depends on all of them (softmax)


def _tup(v: Any, nd: int) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v) if len(v) == nd else tuple(int(v[0]) for _ in range(nd))
    return (int(v),) * nd


def _pairs(p: Any, k: tuple[int, ...], d: tuple[int, ...]) -> tuple[Pairs, bool]:
    """(left, right) per axis; PyTorch's 'same' puts the odd extra pixel on the right."""
    nd = len(k)
    if p == "valid":
        return ((0, 0),) * nd, False
    if p == "same":
        totals = [di * (ki - 1) for ki, di in zip(k, d)]
        return tuple((t // 2, t - t // 2) for t in totals), True
    sym = _tup(p, nd)
    return tuple((v, v) for v in sym), False


def _spatial(shape: tuple[int, ...], nd: int) -> tuple[int, ...]:
    return tuple(shape[-nd:]) if len(shape) >= nd + 1 else ()


def classify_module(m: nn.Module, nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """Geometry of a leaf module call (``in_shape``/``out_shape`` include the batch axis)."""
    if isinstance(m, _conv._ConvNd):
        nd = len(m.kernel_size)  # a Conv1d inside a 2-D net keeps its own axes
    if isinstance(m, _conv._ConvTransposeNd):
        k, s, d = _tup(m.kernel_size, nd), _tup(m.stride, nd), _tup(m.dilation, nd)
        pad = _tup(m.padding, nd)
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
        k, s, d = _tup(m.kernel_size, nd), _tup(m.stride, nd), _tup(m.dilation, nd)
        pairs, same = _pairs(m.padding, k, d)
        if callable(getattr(m, "padding_pairs", None)):  # cnnlab.layers convs: TF 'same' at stride > 1, (l, r) pairs
            applied = m.padding_pairs(_spatial(in_shape, nd))  # type: ignore[operator]
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
    if isinstance(m, (_pool._MaxPoolNd, _pool._AvgPoolNd, _pool._LPPoolNd)):
        k = _tup(m.kernel_size, nd)
        s = _tup(m.stride if m.stride else m.kernel_size, nd)
        pad = _tup(getattr(m, "padding", 0), nd)
        d = _tup(getattr(m, "dilation", 1), nd)
        return Geometry(POOL, k, s, tuple((v, v) for v in pad), d, ceil_mode=bool(m.ceil_mode))
    if isinstance(m, (_pool._AdaptiveAvgPoolNd, _pool._AdaptiveMaxPoolNd)):
        return Geometry(ADAPTIVE)
    if isinstance(m, _pool._MaxUnpoolNd):
        k, s = _tup(m.kernel_size, nd), _tup(m.stride, nd)
        pad = _tup(m.padding, nd)
        return Geometry(CONV_T, k, s, tuple((v, v) for v in pad), (1,) * nd)
    if isinstance(m, nn.Upsample):
        return _upsample(nd, in_shape, out_shape, m.mode, m.scale_factor, m.align_corners, m.recompute_scale_factor)
    if isinstance(m, nn.PixelShuffle):  # output unit o comes from input unit floor(o / r), as nearest
        return _upsample(nd, in_shape, out_shape, "nearest")
    if isinstance(m, nn.PixelUnshuffle):
        r = (int(m.downscale_factor),) * nd
        return Geometry(POOL, r, r, ((0, 0),) * nd, (1,) * nd)
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        return replace(_reshape_geometry(nd, in_shape, out_shape), reshape=True)
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
        mode = next(name for base, name in _PAD_MODES if isinstance(m, base))
        return _pad_geometry(m.padding, nd, mode)
    if isinstance(m, nn.MultiheadAttention):  # lives in torch.nn.modules.activation, but is no activation
        return Geometry(ATTENTION, groups=m.num_heads, bias=m.in_proj_bias is not None, in_ch=m.embed_dim)
    if type(m).__module__.startswith("torch.nn.modules.activation") or isinstance(m, nn.Identity):
        return Geometry(ELEMENTWISE)
    return _shape_geometry(nd, in_shape, out_shape)


# interpolate's modes -> the receptive-field rule that follows them (arith.rf_upsample)
_UPSAMPLE_MODES = {
    "nearest": "nearest", "nearest-exact": "nearest-exact", "linear": "bilinear", "bilinear": "bilinear",
    "trilinear": "bilinear", "bicubic": "bicubic",
}  # fmt: skip
# padding modules -> their mode as conv's padding_mode names it
_PAD_MODES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.modules.padding._ConstantPadNd, "zeros"),
    (nn.modules.padding._ReflectionPadNd, "reflect"),
    (nn.modules.padding._ReplicationPadNd, "replicate"),
    (nn.modules.padding._CircularPadNd, "circular"),
)


def _upsample(
    nd: int,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    mode: str,
    scale_factor: Any = None,
    align_corners: Any = None,
    recompute: Any = None,
) -> Geometry:
    """Upsampling as PyTorch computes it: unit ``o`` reads around ``o / scale`` with ``scale`` the given
    ``scale_factor`` (unless recomputed from the sizes), else ``m / n`` for ``n`` units to ``m``."""
    si, so = _spatial(in_shape, nd), _spatial(out_shape, nd)
    if mode == "area":  # interpolate's area mode is adaptive average pooling to the output size
        return Geometry(ADAPTIVE)
    if mode not in _UPSAMPLE_MODES:
        return Geometry(UNKNOWN)
    rf_mode = _UPSAMPLE_MODES[mode]
    corners = bool(align_corners) and rf_mode in ("bilinear", "bicubic")
    given = _floats(scale_factor, nd) if scale_factor is not None and not recompute else None
    scale = []
    for a, (n, m) in enumerate(zip(si, so)):
        # PyTorch (CPU) copies an axis that keeps its size (nearest, linear) and reads o >> 1 for nearest x2
        shortcut = (m == n and rf_mode in ("nearest", "bilinear")) or (m == 2 * n and rf_mode == "nearest")
        if corners:  # source o * (n-1)/(m-1); one unit in or out: every output reads unit 0
            scale.append((m - 1) / (n - 1) if n > 1 and m > 1 else float(m) if n == 1 else 1 / n)
        elif given is None or shortcut:
            scale.append(m / n)
        else:
            scale.append(given[a])
    return Geometry(UPSAMPLE, scale=tuple(scale), mode=rf_mode, align_corners=corners)


def _floats(v: Any, nd: int) -> tuple[float, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(float(x) for x in v) if len(v) == nd else tuple(float(v[0]) for _ in range(nd))
    return (float(v),) * nd


def _pad_geometry(pad: Any, nd: int, mode: str = "zeros") -> Geometry:
    # F.pad order: last axis first, (left, right) per axis
    flat = _tup(pad, 2 * nd) if isinstance(pad, (tuple, list)) else (int(pad),) * (2 * nd)
    pairs = [(0, 0)] * nd
    for i in range(min(nd, len(flat) // 2)):
        pairs[nd - 1 - i] = (flat[2 * i], flat[2 * i + 1])
    return Geometry(PAD, p=tuple(pairs), pad_mode="zeros" if mode == "constant" else mode)


def _reshape_geometry(nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """A reshape that keeps the trailing spatial axes is harmless; one that merges them is global."""
    if (
        len(in_shape) >= nd + 2
        and _spatial(out_shape, nd) == _spatial(in_shape, nd)
        and len(out_shape) >= nd + 2
    ):
        return Geometry(ELEMENTWISE)
    if len(in_shape) < nd + 2:
        return Geometry(ELEMENTWISE)
    return Geometry(COLLAPSE)


def _shape_geometry(nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """Fallback for ops we do not know: same grid -> elementwise; merged grid -> global; else unknown."""
    if len(in_shape) < nd + 2:
        return Geometry(ELEMENTWISE)
    if len(out_shape) >= nd + 2 and _spatial(out_shape, nd) == _spatial(in_shape, nd):
        return Geometry(ELEMENTWISE)
    if len(out_shape) < nd + 2 or all(v == 1 for v in _spatial(out_shape, nd)):
        return Geometry(COLLAPSE)
    return Geometry(UNKNOWN)


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
            _tup(b.get("stride", 1), nd),
            _tup(b.get("dilation", 1), nd),
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
            _tup(b.get("stride", 1), nd),
            _tup(b.get("dilation", 1), nd),
        )
        pad = _tup(b.get("padding", 0), nd)
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
        k = _tup(b["kernel_size"], nd)
        s = _tup(b.get("stride") or b["kernel_size"], nd)
        pad = _tup(b.get("padding", 0), nd)
        return Geometry(
            POOL,
            k,
            s,
            tuple((v, v) for v in pad),
            _tup(b.get("dilation", 1), nd),
            ceil_mode=bool(b.get("ceil_mode", False)),
        )
    if base.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
        return Geometry(ADAPTIVE)
    if base in ("interpolate", "upsample"):
        b = _bind(_INTERPOLATE_ARGS, args, kwargs)
        if b.get("antialias"):  # a downsampling window that grows with the scale: not followed
            return Geometry(UNKNOWN)
        return _upsample(
            nd, in_shape, out_shape, str(b.get("mode", "nearest")), b.get("scale_factor"),
            b.get("align_corners"), b.get("recompute_scale_factor"),
        )  # fmt: skip
    if base in ("upsample_nearest", "pixel_shuffle"):
        return _upsample(nd, in_shape, out_shape, "nearest")
    if base == "upsample_bilinear":  # deprecated F.upsample_bilinear: align_corners=True
        return _upsample(nd, in_shape, out_shape, "bilinear", align_corners=True)
    if base == "pad":
        b = _bind(("input", "pad", "mode", "value"), args, kwargs)
        return _pad_geometry(b.get("pad", 0), nd, str(b.get("mode") or "constant"))
    if base == "getitem":
        return _getitem_geometry(args, nd, in_shape, out_shape)
    if base in _MERGE and n_tensor_inputs > 1:
        return Geometry(MERGE)
    if base in _RESHAPE:
        return replace(_reshape_geometry(nd, in_shape, out_shape), reshape=True)
    if base in _PERMUTE:
        perm = _permutation(base, args, kwargs, len(in_shape))
        if not perm:
            return _shape_geometry(nd, in_shape, out_shape)
        return replace(_reshape_geometry(nd, in_shape, out_shape), perm=perm)
    if base in _REDUCE:
        reduced, keepdim = _reduction(args, kwargs, len(in_shape), n_tensor_inputs)
        return replace(_reshape_geometry(nd, in_shape, out_shape), reduced=reduced, keepdim=keepdim)
    if base in ("softmax", "log_softmax", "softmin") and in_shape:
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if isinstance(dim, int):
            return Geometry(ELEMENTWISE, mixed=(dim % len(in_shape),))
    if base in ("dropout", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"):
        return Geometry(DROPOUT)
    if base in ("batch_norm", "group_norm", "layer_norm", "instance_norm"):
        return Geometry(NORM)
    return _shape_geometry(nd, in_shape, out_shape)


def _permutation(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], rank: int) -> tuple[int, ...]:
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


def _reduction(
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


def _getitem_geometry(
    args: tuple[Any, ...], nd: int, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> Geometry:
    """``x[..., a:b, c:d]`` crops the grid (U-Net skip crops); other indexing keeps it."""
    if not (isinstance(args[0], torch.Tensor) and len(in_shape) >= nd + 2):
        return Geometry(ELEMENTWISE)
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    if sum(i is Ellipsis for i in index) == 1:  # x[..., ::2, ::2]: the ellipsis stands for the leading axes
        at = index.index(Ellipsis)
        fill = len(in_shape) - (len(index) - 1 - sum(i is None for i in index))
        index = index[:at] + (slice(None),) * max(fill, 0) + index[at + 1 :]
    if any(i is Ellipsis or i is None or not isinstance(i, (slice, int)) for i in index):
        return _shape_geometry(nd, in_shape, out_shape)
    if len(index) <= len(in_shape) - nd or any(isinstance(i, int) for i in index):
        return _shape_geometry(nd, in_shape, out_shape)
    offsets, steps = [], []
    spatial_index = list(index[len(in_shape) - nd :]) + [slice(None)] * (len(in_shape) - len(index))
    for sl, n in zip(spatial_index, _spatial(in_shape, nd)):
        start, _, step = sl.indices(n)
        offsets.append(start)
        steps.append(step)
    return Geometry(CROP, s=tuple(steps), offset=tuple(offsets))


def adaptive_windows(n: int, m: int) -> tuple[int, int, float, float]:
    """Adaptive pooling of ``n`` cells to ``m``: (largest window, smallest window, step, centre of window 0).

    PyTorch's window ``i`` spans ``[floor(i*n/m), ceil((i+1)*n/m))``.
    """
    starts = [(i * n) // m for i in range(m)]
    ends = [math.ceil((i + 1) * n / m) for i in range(m)]
    sizes = [e - s for s, e in zip(starts, ends)]
    centres = [(s + e - 1) / 2 for s, e in zip(starts, ends)]
    # mean spacing of the window centres: n/m when m divides n, 0 when every window is the same cell;
    # one window over the whole map (global pooling) slides by one cell, as fc and explain rf's gap do
    step = (centres[-1] - centres[0]) / (m - 1) if m > 1 else 1.0
    return max(sizes), min(sizes), step, centres[0]
