"""The vocabulary of the analysis graph: op classes and :class:`Geometry`, what one op does to the grid.

:mod:`cnnlab.analysis.nodes` classifies each node into a ``Geometry``; MAC counting, receptive fields
and the lint rules read it. The per-axis normalisers here are shared by the classifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    reordered: tuple[int, ...] = ()  # flip/roll/rot90: the units along these input axes change places


def per_axis(v: Any, nd: int) -> tuple[int, ...]:
    """One int per axis from an int or a sequence (a sequence of another length repeats its first)."""
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v) if len(v) == nd else tuple(int(v[0]) for _ in range(nd))
    return (int(v),) * nd


def spatial(shape: tuple[int, ...], nd: int) -> tuple[int, ...]:
    """The trailing ``nd`` (spatial) sizes of a shape with batch and channel axes; () when it has none."""
    return tuple(shape[-nd:]) if len(shape) >= nd + 1 else ()
