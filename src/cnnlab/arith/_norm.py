"""The one normalising helper of :mod:`cnnlab.arith`: ``int | tuple`` arguments -> per-axis tuples.

Every public function of the package takes sizes, kernels, strides, paddings and dilations either as
one ``int`` (the same on every axis) or as a tuple with one entry per spatial axis. The number of
axes (1 for audio ``L``, 2 for images ``H, W``, 3 for video ``D, H, W``) is taken from the first
tuple among the arguments; when every argument is an ``int`` the caller's default applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, TypeAlias

IntOrTuple: TypeAlias = int | Sequence[int]
Pair: TypeAlias = tuple[int, int]
# int | per-axis ints | per-axis (left, right) pairs | "same" | "valid"
Padding: TypeAlias = int | Sequence[int] | Sequence[Sequence[int]] | Literal["same", "valid"]

_AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def axis_names(ndim: int) -> tuple[str, ...]:
    """Names of the spatial axes: ``L`` for 1-D, ``H, W`` for 2-D, ``D, H, W`` for 3-D.

    >>> axis_names(2)
    ('H', 'W')
    """
    if ndim in _AXIS_NAMES:
        return _AXIS_NAMES[ndim]
    return tuple(f"axis{i}" for i in range(ndim))


def _is_int(value: object) -> bool:
    # bool is an int subclass, but kernel_size=True is always a mistake
    return isinstance(value, int) and not isinstance(value, bool)


def infer_ndim(*values: object, default: int = 1) -> int:
    """Number of spatial axes: the length of the first tuple/list among ``values``, else ``default``.

    Strings (padding ``"same"``) and ``None`` do not count; a padding given as (left, right) pairs
    counts one axis per pair.

    >>> infer_ndim(32, (3, 3))
    2
    """
    for value in values:
        if isinstance(value, (tuple, list)):
            if len(value) == 0:
                raise ValueError(f"received an empty tuple {value!r}; give one value per spatial axis")
            return len(value)
    return default


def to_tuple(value: object, ndim: int, name: str, *, minimum: int | None = None) -> tuple[int, ...]:
    """Normalise ``int | tuple`` to a tuple of ``ndim`` ints, checking ``value >= minimum``.

    >>> to_tuple(3, 2, "kernel")
    (3, 3)
    >>> to_tuple((1, 7), 2, "kernel")
    (1, 7)
    """
    if _is_int(value):
        out = (int(value),) * ndim  # type: ignore[call-overload]
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        if len(value) != ndim:
            raise ValueError(
                f"{name} has {len(value)} entries but the layer has {ndim} spatial axes "
                f"({', '.join(axis_names(ndim))}); received {name}={tuple(value)!r}. Give one int for all "
                f"axes or a tuple of {ndim}."
            )
        out = tuple(int(v) for v in value)
    else:
        raise ValueError(
            f"{name} must be an int or a tuple of {ndim} ints; received {name}={value!r} "
            f"({type(value).__name__})."
        )
    if minimum is not None:
        check_minimum(out, name, minimum)
    return out


def check_minimum(values: tuple[int, ...], name: str, minimum: int) -> None:
    """Raise ``ValueError`` naming the axis when an entry of ``values`` is below ``minimum``."""
    names = axis_names(len(values))
    for axis, v in zip(names, values):
        if v < minimum:
            rule = "positive" if minimum == 1 else f">= {minimum}"
            what = {0: "negative", 1: "non-positive"}.get(minimum, "too small")
            raise ValueError(
                f"{name} must be {rule} on every axis; received {name}={v} along {axis} "
                f"({what} {name} is not supported, as in PyTorch). Use {name}={minimum} or more."
            )


def to_pairs(p: object, ndim: int, name: str = "padding") -> tuple[Pair, ...]:
    """Normalise an explicit padding to per-axis ``(left, right)`` pairs (``"same"`` is not handled here).

    ``p`` may be an int, a tuple of per-axis ints (symmetric), or a tuple of per-axis pairs.

    >>> to_pairs(1, 2)
    ((1, 1), (1, 1))
    >>> to_pairs(((0, 1), (2, 2)), 2)
    ((0, 1), (2, 2))
    """
    if p == "valid":
        return ((0, 0),) * ndim
    if isinstance(p, (tuple, list)) and p and all(isinstance(v, (tuple, list)) for v in p):
        if len(p) != ndim:
            raise ValueError(
                f"{name} has {len(p)} (left, right) pairs but the layer has {ndim} spatial axes; "
                f"received {name}={p!r}. Give one pair per axis."
            )
        pairs = []
        for pair in p:
            if len(pair) != 2 or not all(_is_int(v) for v in pair):
                raise ValueError(f"each {name} pair must be two ints (left, right); received {pair!r}.")
            pairs.append((int(pair[0]), int(pair[1])))
        out = tuple(pairs)
    else:
        sym = to_tuple(p, ndim, name)
        out = tuple((v, v) for v in sym)
    for axis, (left, right) in zip(axis_names(ndim), out):
        if left < 0 or right < 0:
            raise ValueError(
                f"{name} must be >= 0 on every axis; received ({left}, {right}) along {axis}. Negative "
                f"padding is not supported (PyTorch rejects it too); crop the input instead."
            )
    return out


def ceil_div(a: int, b: int) -> int:
    # ceil(a / b) for positive b, exact in integers
    return -(-a // b)


def is_finite_positive(x: float) -> bool:
    """True for a finite number > 0 (used for upsampling scale factors)."""
    return math.isfinite(x) and x > 0
