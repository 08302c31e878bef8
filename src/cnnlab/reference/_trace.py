"""Shared machinery of the explain traces: input checks, the window-by-window convolution loop and
the text blocks that show matrices side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from cnnlab.arith import conv_out, resolve_padding
from cnnlab.reference._common import Pads, pads
from cnnlab.reference._text import matrix_lines, num, parse_matrix, side_by_side, to_list

ArrayInput = np.ndarray | Sequence[Any] | str


def as_array(value: ArrayInput, name: str) -> np.ndarray:
    """Text (parsed by :func:`parse_matrix`) or nested lists -> float64 array of at least 2 axes."""
    arr = parse_matrix(value, name=name) if isinstance(value, str) else np.asarray(value, dtype=np.float64)
    if arr.ndim < 2 or arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(
            f"{name} must be a non-empty matrix (H, W) or stack of matrices of finite numbers; received "
            f"shape {arr.shape}. Type it like '1 2 3; 4 5 6'."
        )
    return arr


def kernels_of(x: np.ndarray, w: np.ndarray, name: str = "kernel") -> np.ndarray:
    """Bring the kernel to (F, C, kh, kw) for an input of C channels."""
    c = x.shape[0]
    if w.ndim == 2:
        w = np.broadcast_to(w, (c, *w.shape)) if c == 1 else w
        if w.ndim == 2:
            raise ValueError(
                f"{name} is a single {w.shape[0]}x{w.shape[1]} matrix but the input has {c} channels. Give "
                f"one matrix per channel separated by '|' (a stacked filter of shape ({c}, kh, kw))."
            )
        return w[None]
    if w.ndim == 3 and w.shape[0] == c:
        return w[None]  # one stacked filter (C, kh, kw)
    if w.ndim == 3 and c == 1:
        return w[:, None]  # several single-channel filters (F, kh, kw)
    if w.ndim == 4 and w.shape[1] == c:
        return w
    raise ValueError(
        f"{name} of shape {w.shape} does not fit an input with {c} channels. Use a stacked filter "
        f"({c}, kh, kw) (channels separated by '|') or several filters (F, {c}, kh, kw) "
        f"(filters separated by '||')."
    )


def axis_formula(axis: str, n: int, k: int, s: int, p: Pads | tuple[int, int], d: int, out: int) -> str:
    """The conv output-size formula for one axis with the user's numbers filled in."""
    lo, hi = p
    pad_text = f"2*{lo}" if lo == hi else f"({lo}+{hi})"
    return (
        f"{axis}_out = floor(({axis} + 2p - d(k-1) - 1) / s) + 1 = "
        f"floor(({n} + {pad_text} - {d}*({k}-1) - 1) / {s}) + 1 = {out}"
    )


def pad_text(p: Pads) -> str:
    """``(1, 1)`` for symmetric padding, else ``top/bottom 1/2, left/right 0/1``."""
    if p[0][0] == p[0][1] and p[1][0] == p[1][1]:
        return str((p[0][0], p[1][0]))
    return f"top/bottom {p[0][0]}/{p[0][1]}, left/right {p[1][0]}/{p[1][1]}"


def resolve_pads(
    padding: int | tuple[int, int] | Pads | str,
    size: tuple[int, ...],
    k: tuple[int, int],
    s: tuple[int, int],
    d: tuple[int, int],
) -> Pads:
    """Padding as ((top, bottom), (left, right)); 'same' and 'valid' are resolved by cnnlab.arith."""
    if isinstance(padding, str):
        (t, b), (l, r) = resolve_padding(cast(Any, padding), (size[0], size[1]), k, s, d)
        return ((t, b), (l, r))
    return pads(padding)


# cells per side of the grid a step-by-step trace slides over (the padded or zero-inserted input); the
# output is never larger. 200x200 is 40,000 windows per filter, already far more than anyone reads, and
# prints in a few seconds; larger grids took minutes or all the memory.
MAX_TRACE_SIDE = 200

# (setting, its value as text, how many cells it adds along the grid's longer side)
GridPart = tuple[str, str, int]


def check_trace_grid(
    what: str, grid: tuple[int, int], parts: list[GridPart], layer: str, chw: Sequence[int]
) -> None:
    """Reject a trace whose grid has a side above :data:`MAX_TRACE_SIDE`, naming the setting that grows
    the grid most (computed from the sizes alone, before any array is allocated). ``layer`` is the same
    layer in the layer language and ``chw`` the input shape, for the `explain shape` command to suggest."""
    if max(grid) <= MAX_TRACE_SIDE:
        return
    name, value, _ = max(parts, key=lambda part: part[2])
    raise ValueError(
        f"the step-by-step trace of this {what} would slide over a {grid[0]}x{grid[1]} grid, mostly "
        f"because of {name}={value}; a trace shows grids (padded input and output) of at most "
        f"{MAX_TRACE_SIDE} cells per side. Use a smaller {name}, or get the output size alone with "
        f'`cnnlab explain shape "{layer}" --input {chw[1]},{chw[2]},{chw[0]}`.'
    )


def axis_text(pair: tuple[int, int]) -> str:
    """``(3, 3)`` -> ``3``, ``(1, 7)`` -> ``1x7``, as the layer language writes a per-axis value."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def groups_note(c: int, g: int) -> str:
    """How error messages name the kernel: with groups, each filter sees only C/groups channels."""
    return "kernel" if g == 1 else f"kernel (groups={g}: each filter sees {c // g} of the {c} input channels)"


def window(xp: np.ndarray, r0: int, c0: int, k: tuple[int, int], d: tuple[int, int]) -> np.ndarray:
    """Sampled window (C, kh, kw) whose top-left corner is (r0, c0) in the padded input."""
    return xp[:, r0 : r0 + d[0] * (k[0] - 1) + 1 : d[0], c0 : c0 + d[1] * (k[1] - 1) + 1 : d[1]]


def channel_view(arr: np.ndarray, squeeze: bool) -> Any:
    """Nested lists of (C, ...) data, without the channel axis when the input was a plain matrix."""
    return to_list(arr[0] if squeeze else arr)


def conv_core(
    xp: np.ndarray,
    kernels: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    bias: np.ndarray,
    squeeze: bool,
    groups: int = 1,
) -> tuple[np.ndarray, list[dict[str, Any]], list[str]]:
    """Slide every filter over the padded input (C, Hp, Wp); return output (F, Ho, Wo), steps, lines.

    kernels: (F, C/groups, kh, kw); filter ``fi`` belongs to group ``fi // (F/groups)`` and sees only
    that group's C/groups channels.
    """
    f, cg, kh, kw = kernels.shape
    ho, wo = conv_out(xp.shape[1:], (kh, kw), stride, 0, dilation)
    out = np.zeros((f, ho, wo))
    steps: list[dict[str, Any]] = []
    lines: list[str] = []
    for fi in range(f):
        gi = fi // (f // groups)
        xg = xp[gi * cg : (gi + 1) * cg]  # (C/groups, Hp, Wp): the channels of this filter's group
        for i in range(ho):
            for j in range(wo):
                r0, c0 = i * stride[0], j * stride[1]
                win = window(xg, r0, c0, (kh, kw), dilation)  # (C/groups, kh, kw)
                prod = win * kernels[fi]
                per_channel = prod.sum(axis=(1, 2))
                total = float(per_channel.sum())
                out[fi, i, j] = total + bias[fi]
                steps.append(
                    {
                        "filter": fi,
                        **({"group": gi} if groups > 1 else {}),
                        "position": [i, j],
                        "rows": [r0, r0 + dilation[0] * (kh - 1)],
                        "cols": [c0, c0 + dilation[1] * (kw - 1)],
                        "window": channel_view(win, squeeze),
                        "products": channel_view(prod, squeeze),
                        "channel_sums": to_list(per_channel),
                        "sum": to_list(np.float64(total)),
                        "bias": to_list(bias[fi]),
                        "value": to_list(out[fi, i, j]),
                    }
                )
                lines += step_lines(steps[-1], win, kernels[fi], prod, f > 1, first_channel=gi * cg)
    return out, steps, lines


def _taps(lo: int, hi: int, n: int) -> str:
    """``0, 2, 4``: the ``n`` rows (or columns) from ``lo`` to ``hi`` that a dilated kernel's taps read."""
    gap = (hi - lo) // (n - 1) if n > 1 else 1
    return ", ".join(str(lo + t * gap) for t in range(n))


def step_lines(
    step: dict[str, Any],
    win: np.ndarray,
    k: np.ndarray,
    prod: np.ndarray,
    many: bool,
    first_channel: int = 0,
) -> list[str]:
    """Text of one conv step: window ⊙ kernel = products per channel, then the sums.

    ``first_channel`` numbers the window's channels as input channels (a group's channels start there).
    """
    i, j = step["position"]
    head = f"filter {step['filter']} " if many else ""
    if "group" in step:
        head += f"(group {step['group']}) "
    (r0, r1), (c0, c1), (kh, kw) = step["rows"], step["cols"], k.shape[-2:]
    if r1 - r0 > kh - 1 or c1 - c0 > kw - 1:  # dilated: the taps skip the rows and columns between them
        where = f"taps at rows {_taps(r0, r1, kh)}, cols {_taps(c0, c1, kw)}"
    else:
        where = f"window rows {r0}-{r1}, cols {c0}-{c1}"
    lines = [f"{head}output[{i}, {j}]: {where} of the padded input"]
    for ch in range(win.shape[0]):
        if win.shape[0] > 1:
            lines.append(f"  channel {first_channel + ch}:")
        lines += side_by_side(
            [matrix_lines(win[ch], "    "), matrix_lines(k[ch], ""), matrix_lines(prod[ch], "")], ["⊙", "="]
        )
        terms = " + ".join(num(float(v)) for v in prod[ch].ravel())
        lines.append(f"    sum = {terms} = {num(float(prod[ch].sum()))}")
    if win.shape[0] > 1:
        parts = " + ".join(num(float(v)) for v in prod.sum(axis=(1, 2)))
        lines.append(f"  sum over channels = {parts} = {num(float(prod.sum()))}")
    if step["bias"] != 0:
        lines.append(f"  + bias {num(float(step['bias']))} = {num(float(step['value']))}")
    return lines


def prepare_input(x: ArrayInput) -> tuple[np.ndarray, bool]:
    """Input as (C, H, W) plus whether it was a plain (H, W) matrix (then outputs drop the C axis)."""
    arr = as_array(x, "input")
    if arr.ndim > 3:
        raise ValueError(
            f"input must be (H, W) or (C, H, W); received shape {arr.shape}. Explain one image at a time."
        )
    return (arr[None], True) if arr.ndim == 2 else (arr, False)


def shape_text(arr: np.ndarray) -> str:
    """``4x5`` for an array of shape (4, 5)."""
    return "x".join(str(n) for n in arr.shape)


def block_lines(title: str, arr: np.ndarray) -> list[str]:
    """Title plus each channel (C, H, W) as aligned rows."""
    lines = [title]
    for ch in range(arr.shape[0]):
        if arr.shape[0] > 1:
            lines.append(f"  channel {ch}:")
        lines += matrix_lines(arr[ch], "    " if arr.shape[0] > 1 else "  ")
    return lines
