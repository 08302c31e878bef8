"""Output sizes of convolution, pooling and transposed convolution, per spatial axis.

Each function takes the input size ``n`` and the layer's kernel ``k``, stride ``s``, padding ``p`` and
dilation ``d`` as one int (same on every axis) or per-axis tuples, and returns a tuple with one output
size per axis. The number of axes comes from the first tuple among the arguments (1 when all are ints).
Impossible input (an empty output, zero stride, padding PyTorch would refuse) raises ``ValueError``.
"""

from __future__ import annotations

from cnnlab.arith._norm import (
    IntOrTuple,
    Padding,
    Pair,
    axis_names,
    ceil_div,
    infer_ndim,
    to_pairs,
    to_tuple,
)

__all__ = [
    "conv_out",
    "conv_transpose_out",
    "effective_kernel",
    "keep_size_padding",
    "pool_out",
    "resolve_padding",
    "same_padding",
    "unread_border",
]


def _effective_kernel_1d(k: int, d: int) -> int:
    # k_eff = k + (k - 1)(d - 1) = d(k - 1) + 1
    return k + (k - 1) * (d - 1)


def effective_kernel(k: IntOrTuple, d: IntOrTuple = 1) -> tuple[int, ...]:
    """Extent of a dilated kernel, ``k + (k-1)(d-1)``, per axis.

    >>> effective_kernel(3, 2)
    (5,)
    >>> effective_kernel((3, 3), (1, 4))
    (3, 9)
    """
    ndim = infer_ndim(k, d)
    ks = to_tuple(k, ndim, "kernel", minimum=1)
    ds = to_tuple(d, ndim, "dilation", minimum=1)
    return tuple(_effective_kernel_1d(ki, di) for ki, di in zip(ks, ds))


def _window_args(
    n: IntOrTuple, k: IntOrTuple, s: IntOrTuple, p: Padding, d: IntOrTuple
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[Pair, ...]]:
    """``n, k, s, d`` as checked per-axis tuples and ``p`` as (before, after) pairs, for one window layer."""
    ndim = infer_ndim(n, k, s, d, p)
    ns = to_tuple(n, ndim, "input size", minimum=1)
    ks = to_tuple(k, ndim, "kernel", minimum=1)
    ss = to_tuple(s, ndim, "stride", minimum=1)
    ds = to_tuple(d, ndim, "dilation", minimum=1)
    return ns, ks, ss, ds, resolve_padding(p, ns, ks, ss, ds)


def _same_pair(n: int, k_eff: int, s: int) -> Pair:
    # total = max((ceil(n/s) - 1)*s + k_eff - n, 0); left = total // 2, right = total - left (TensorFlow)
    total = max((ceil_div(n, s) - 1) * s + k_eff - n, 0)
    return (total // 2, total - total // 2)


def same_padding(n: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, d: IntOrTuple = 1) -> tuple[Pair, ...]:
    """TensorFlow's 'same' padding as (left, right) per axis: the output has ``ceil(n / s)`` units.

    An odd total puts the extra pixel on the right/bottom, as TensorFlow and PyTorch's
    ``padding='same'`` do (PyTorch allows 'same' only for stride 1; cnnlab follows TF for any stride).

    >>> same_padding(32, 4)
    ((1, 2),)
    >>> same_padding((7, 7), 3, 2)
    ((1, 1), (1, 1))
    """
    ndim = infer_ndim(n, k, s, d)
    ns = to_tuple(n, ndim, "input size", minimum=1)
    ss = to_tuple(s, ndim, "stride", minimum=1)
    ke = effective_kernel(to_tuple(k, ndim, "kernel"), to_tuple(d, ndim, "dilation"))
    return tuple(_same_pair(ni, ki, si) for ni, ki, si in zip(ns, ke, ss))


def keep_size_padding(
    n: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, d: IntOrTuple = 1
) -> tuple[float, ...]:
    """Padding per side that keeps the output size equal to ``n`` at stride ``s`` (the seeds' formula).

    Solving ``(n + 2p - k)/s + 1 = n`` gives ``p = (n*s - n + k - s) / 2``; a half means the padding
    must be split unevenly. Compare :func:`same_padding`, which aims at ``ceil(n / s)`` instead.

    >>> keep_size_padding(32, 5)
    (2.0,)
    >>> keep_size_padding(10, 3, 2)
    (5.5,)
    """
    ndim = infer_ndim(n, k, s, d)
    ns = to_tuple(n, ndim, "input size", minimum=1)
    ss = to_tuple(s, ndim, "stride", minimum=1)
    ke = effective_kernel(to_tuple(k, ndim, "kernel"), to_tuple(d, ndim, "dilation"))
    # p = (n*s - n + f - s) / 2
    return tuple((ni * si - ni + ki - si) / 2 for ni, ki, si in zip(ns, ke, ss))


def resolve_padding(
    p: Padding, n: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, d: IntOrTuple = 1
) -> tuple[Pair, ...]:
    """Any accepted padding (int, per-axis ints, (left, right) pairs, 'same', 'valid') as pairs.

    >>> resolve_padding("same", (8, 8), 3)
    ((1, 1), (1, 1))
    """
    ndim = infer_ndim(n, k, s, d, p)
    if isinstance(p, str):
        if p == "same":
            return same_padding(
                to_tuple(n, ndim, "input size"),
                to_tuple(k, ndim, "kernel"),
                to_tuple(s, ndim, "stride"),
                to_tuple(d, ndim, "dilation"),
            )
        if p == "valid":
            return ((0, 0),) * ndim
        raise ValueError(
            f"padding must be an int, a tuple, (left, right) pairs, 'same' or 'valid'; received "
            f"padding={p!r}. Use e.g. padding=1 or padding='same'."
        )
    return to_pairs(p, ndim, "padding")


def _floor_or_ceil_out(n: int, left: int, right: int, k_eff: int, s: int, ceil_mode: bool) -> int:
    # out = floor_or_ceil((n + left + right - k_eff) / s) + 1; with ceil_mode the last window must
    # start inside the input or its left padding: if (out - 1)*s >= n + left then out -= 1 (PyTorch)
    span = n + left + right - k_eff
    out = (ceil_div(span, s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + left:
        out -= 1
    return out


def _pad_text(pair: Pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"({pair[0]}, {pair[1]})"


def _check_window_fits(what: str, axis: str, n: int, k: int, pair: Pair, s: int, d: int, k_eff: int) -> None:
    if n + pair[0] + pair[1] >= k_eff:
        return
    dil = f", dilation {d}" if d != 1 else ""
    rule = "input + 2*padding" if pair[0] == pair[1] else "input + left + right padding"
    # without dilation the window is just the kernel (pooling from the command line has no dilation)
    window = "dilation*(kernel-1)+1" if d != 1 else "kernel"
    raise ValueError(
        f"{what} output would be 0 along {axis}: input {n}, kernel {k}, padding {_pad_text(pair)}, "
        f"stride {s}{dil} need {rule} >= {window} = {k_eff}, but {rule} = {n + pair[0] + pair[1]}. "
        f"Use a smaller kernel{' or dilation' if d != 1 else ''}, more padding, or a larger input."
    )


def conv_out(
    n: IntOrTuple,
    k: IntOrTuple,
    s: IntOrTuple = 1,
    p: Padding = 0,
    d: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """Output size of a convolution: ``floor((n + 2p - d(k-1) - 1) / s) + 1`` per axis.

    ``p`` may be an int, per-axis ints, per-axis ``(left, right)`` pairs, ``"valid"`` (0) or ``"same"``
    (TensorFlow rule: output ``ceil(n / s)``, any stride, even kernels padded more on the right).

    >>> conv_out(224, 5)
    (220,)
    >>> conv_out((228, 228), 5, p=0)
    (224, 224)
    >>> conv_out((32, 32), 3, s=2, p="same")
    (16, 16)
    """
    ns, ks, ss, ds, pairs = _window_args(n, k, s, p, d)
    ke = effective_kernel(ks, ds)
    out = []
    for axis, ni, ki, si, di, kei, pair in zip(axis_names(len(ns)), ns, ks, ss, ds, ke, pairs):
        _check_window_fits("conv", axis, ni, ki, pair, si, di, kei)
        out.append(_floor_or_ceil_out(ni, pair[0], pair[1], kei, si, ceil_mode))
    return tuple(out)


def _check_pool_padding(pairs: tuple[Pair, ...], ks: tuple[int, ...]) -> None:
    # PyTorch: padding <= kernel // 2, otherwise a window could lie entirely in the padding
    for axis, (left, right), ki in zip(axis_names(len(ks)), pairs, ks):
        if max(left, right) > ki // 2:
            raise ValueError(
                f"pooling padding must be at most half the kernel size along {axis} (padding <= "
                f"kernel // 2 = {ki // 2}), or a window could lie entirely in the padding; received "
                f"padding {_pad_text((left, right))} with kernel {ki}. Use padding <= {ki // 2}."
            )


def pool_out(
    n: IntOrTuple,
    k: IntOrTuple,
    s: IntOrTuple | None = None,
    p: Padding = 0,
    d: IntOrTuple = 1,
    *,
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """Output size of max/average pooling, PyTorch's rule (``s`` defaults to ``k``).

    ``floor_or_ceil((n + 2p - d(k-1) - 1) / s) + 1``; with ``ceil_mode`` a last window that would
    start in the right padding is dropped. Padding above ``kernel // 2`` is rejected, as in PyTorch.

    >>> pool_out(32, 2)
    (16,)
    >>> pool_out((5, 5), 2, 2, ceil_mode=True)
    (3, 3)
    """
    ndim = infer_ndim(n, k, s, d, p)
    ns = to_tuple(n, ndim, "input size", minimum=1)
    ks = to_tuple(k, ndim, "kernel", minimum=1)
    ss = ks if s is None else to_tuple(s, ndim, "stride", minimum=1)
    ds = to_tuple(d, ndim, "dilation", minimum=1)
    pairs = resolve_padding(p, ns, ks, ss, ds)
    if p != "same":
        _check_pool_padding(pairs, ks)
    ke = effective_kernel(ks, ds)
    out = []
    for axis, ni, ki, si, di, kei, pair in zip(axis_names(ndim), ns, ks, ss, ds, ke, pairs):
        size = _floor_or_ceil_out(ni, pair[0], pair[1], kei, si, ceil_mode)
        if size < 1:
            # with ceil_mode PyTorch lets the last window hang over the edge, so only an empty output fails
            _check_window_fits("pool", axis, ni, ki, pair, si, di, kei)
        out.append(size)
    return tuple(out)


def unread_border(
    n: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, p: Padding = 0, d: IntOrTuple = 1
) -> tuple[Pair, ...]:
    """Rows/columns at the end of the padded input that no window reads (floor rule), per axis, as
    ``(unread, of them input)``: the stride does not divide the padded span, so the output is floored.

    The rest of ``unread`` is right/bottom padding. ``cnnlab inspect``'s lint ``unread-border`` counts
    the same way.

    >>> unread_border(224, 5, 2, 2)
    ((1, 0),)
    >>> unread_border((5, 6), 2, 2)
    ((1, 1), (0, 0))
    """
    ns, ks, ss, ds, pairs = _window_args(n, k, s, p, d)
    out = []
    for ni, kei, si, (left, right) in zip(ns, effective_kernel(ks, ds), ss, pairs):
        # unread = (n + left + right - k_eff) mod s; the input part is what the right padding does not cover
        unread = max(ni + left + right - kei, 0) % si
        out.append((unread, max(0, unread - right)))
    return tuple(out)


def skipped_inputs(n: int, k: int, s: int, pair: Pair, d: int = 1) -> int:
    """How many of the ``n`` input positions along one axis no window tap reads (floor rule).

    Tap ``j`` of window ``o`` reads position ``o*s + j*d - left``. Besides the tail that
    :func:`unread_border` counts, a kernel narrower than the stride, or dilation gaps wider than the
    stride can fill, leave positions inside the map unread. Each tap reads an arithmetic progression
    of step ``s``; progressions of one residue merge where they meet, so this is exact for any size.

    >>> skipped_inputs(4, 1, 2, (1, 1))  # a 1x1 kernel at stride 2 on 1+4+1 positions reads 1 and 3
    2
    >>> skipped_inputs(224, 5, 2, (2, 2))
    0
    """
    left, right = pair
    kei = (k - 1) * d + 1
    if n + left + right < kei:
        return n
    out = (n + left + right - kei) // s + 1
    runs: dict[int, list[tuple[int, int]]] = {}  # residue mod s -> [first, last] of each tap's progression
    for j in range(k):
        first = j * d - left
        last = first + (out - 1) * s
        if first < 0:  # step up to the first position >= 0 of this progression
            first -= first // s * s
        if last > n - 1:  # and down to the last position < n
            last -= -(-(last - (n - 1)) // s) * s
        if first <= last:
            runs.setdefault(first % s, []).append((first, last))
    read = 0
    for spans in runs.values():
        spans.sort()
        lo, hi = spans[0]
        for a, b in spans[1:]:
            if a <= hi + s:  # same residue: contiguous with the run so far
                hi = max(hi, b)
            else:
                read += (hi - lo) // s + 1
                lo, hi = a, b
        read += (hi - lo) // s + 1
    return n - read


def _check_output_padding(ops: tuple[int, ...], ss: tuple[int, ...], ds: tuple[int, ...]) -> None:
    # PyTorch: output_padding < stride or output_padding < dilation
    for axis, op, si, di in zip(axis_names(len(ops)), ops, ss, ds):
        if op < 0 or (op >= si and op >= di):
            why = (
                f"Use output_padding < {max(si, di)}; it only picks between the {max(si, di)} input sizes that give "
                "the same output under the forward convolution."
                if max(si, di) > 1
                else "With stride 1 and dilation 1 use output_padding=0: each output size comes from one input "
                "size, so there is nothing to pick."
            )
            raise ValueError(
                f"output_padding must be >= 0 and smaller than either stride or dilation along {axis}; "
                f"received output_padding={op} with stride={si}, dilation={di}. {why}"
            )


def conv_transpose_out(
    n: IntOrTuple,
    k: IntOrTuple,
    s: IntOrTuple = 1,
    p: Padding = 0,
    output_padding: IntOrTuple = 0,
    d: IntOrTuple = 1,
) -> tuple[int, ...]:
    """Output size of a transposed convolution: ``(n-1)s - 2p + d(k-1) + output_padding + 1``.

    >>> conv_transpose_out(16, 4, s=2, p=1)
    (32,)
    >>> conv_transpose_out((7, 7), 3, s=2, p=1, output_padding=1)
    (14, 14)
    """
    ndim = infer_ndim(n, k, s, d, p, output_padding)
    ns = to_tuple(n, ndim, "input size", minimum=1)
    ks = to_tuple(k, ndim, "kernel", minimum=1)
    ss = to_tuple(s, ndim, "stride", minimum=1)
    ds = to_tuple(d, ndim, "dilation", minimum=1)
    ops = to_tuple(output_padding, ndim, "output_padding")
    if isinstance(p, str):
        raise ValueError(
            f"transposed convolution takes numeric padding only; received padding={p!r}. "
            "Give an int or a tuple (PyTorch's ConvTranspose has no 'same')."
        )
    pairs = to_pairs(p, ndim, "padding")
    _check_output_padding(ops, ss, ds)
    out = []
    for axis, ni, ki, si, di, op, pair in zip(axis_names(ndim), ns, ks, ss, ds, ops, pairs):
        # out = (n - 1)*s - (left + right) + d*(k - 1) + output_padding + 1
        size = (ni - 1) * si - pair[0] - pair[1] + di * (ki - 1) + op + 1
        if size < 1:
            raise ValueError(
                f"transposed conv output would be {size} along {axis}: (input-1)*stride - 2*padding + "
                f"dilation*(kernel-1) + output_padding + 1 = ({ni}-1)*{si} - {pair[0] + pair[1]} + "
                f"{di}*({ki}-1) + {op} + 1 = {size}. Use less padding or a larger kernel or stride."
            )
        out.append(size)
    return tuple(out)
