"""Step-by-step traces of convolution, pooling and transposed convolution, with the user's numbers.

Each ``explain_*`` function returns a dict: ``output`` (nested lists; ints when every value is
integral), ``steps`` (one JSON-serialisable dict per window position: position, window, element-wise
products, sum), ``padded_input``, ``formula`` (the output-size formula with the numbers filled in)
and ``lines`` (the same as text for people). ``cnnlab explain`` prints ``"\\n".join(d["lines"])`` or
the dict without ``lines`` as JSON.

Example (the worked example whose first output is 66):
    >>> d = explain_conv(parse_matrix("1 2 3 4 5; 6 7 8 2 3; 2 5 9 9 5; 4 8 8 2 1"),
    ...                  parse_matrix("1 1 1; 2 1 2; 3 2 1"))
    >>> d["output"]
    [[66, 77, 86], [84, 96, 79]]
    >>> d["steps"][0]["sum"]
    66
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab.arith import conv_out, conv_params, conv_transpose_out, pool_out
from cnnlab.arith.notes import dilation_note, floor_notes, same_notes
from cnnlab.reference._common import Pads, pad2d, pads, positive_pair
from cnnlab.reference._text import matrix_lines, num, parse_matrix, to_list
from cnnlab.reference._trace import (
    ArrayInput,
    GridPart,
    as_array,
    axis_formula,
    axis_text,
    block_lines,
    channel_view,
    check_trace_grid,
    conv_core,
    groups_note,
    kernels_of,
    pad_text,
    prepare_input,
    resolve_pads,
    shape_text,
)

__all__ = ["explain_conv", "explain_pool", "explain_transposed", "parse_matrix"]


CROSS_CORRELATION_NOTE = (
    "Note: this is cross-correlation, which deep-learning libraries (PyTorch's conv2d, TensorFlow's "
    "conv2d) compute and call convolution: the kernel slides over the input as given. The textbook "
    "(signal-processing) convolution first rotates the kernel by 180 degrees; pass flip=True "
    "(--flip) to see it."
)
FLIP_NOTE = (
    "Note: flip=True computes the textbook convolution: the kernel is rotated by 180 degrees (rows and "
    "columns reversed) before it slides, out[i, j] = sum x[i*s+m*d, j*s+n*d] * w[kh-1-m, kw-1-n] (x padded, "
    "s the stride, d the dilation). Deep-learning libraries (PyTorch's conv2d, TensorFlow's conv2d) compute "
    "cross-correlation instead, out[i, j] = sum x[i*s+m*d, j*s+n*d] * w[m, n], without the flip. The two "
    "agree for kernels that are symmetric under a 180-degree rotation; for learned kernels the difference "
    "does not matter, because training simply learns the flipped kernel."
)


def explain_conv(
    x: ArrayInput,
    w: ArrayInput,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | Pads | str = 0,
    dilation: int | tuple[int, int] = 1,
    padding_mode: str = "zeros",
    flip: bool = False,
    bias: float | Sequence[float] = 0,
    groups: int = 1,
) -> dict[str, Any]:
    """Trace a 2-D convolution window by window.

    x: (H, W) or (C, H, W); w: (kh, kw), a stacked filter (C, kh, kw) or filters (F, C, kh, kw)
    (for a one-channel input, (F, kh, kw) means F filters). Computes cross-correlation like PyTorch,
    or the textbook convolution (kernel rotated by 180 degrees) with ``flip=True``. ``padding`` is an
    int, (ph, pw), ((top, bottom), (left, right)), ``"valid"`` or ``"same"`` (TensorFlow's rule).
    With ``groups=g`` each filter has C/g channels, as PyTorch's weight (F, C/g, kh, kw): filter ``fi``
    of the F sees only the channels of group ``fi // (F/g)``.

    >>> explain_conv("1 2; 3 4", "1 0; 0 1")["output"]
    [[5]]
    """
    xc, squeeze = prepare_input(x)
    c = xc.shape[0]
    g = _groups(groups, c)
    kernels = kernels_of(xc[: c // g], as_array(w, "kernel"), groups_note(c, g))
    if flip:
        kernels = kernels[..., ::-1, ::-1]
    s, d = positive_pair(stride, "stride"), positive_pair(dilation, "dilation")
    f, _, kh, kw = kernels.shape
    conv_params(c, f, (kh, kw), g)  # F divisible by groups too (PyTorch's rule and wording)
    p = resolve_pads(padding, xc.shape[1:], (kh, kw), s, d)
    b = _bias_vector(bias, f)
    ho, wo = conv_out(xc.shape[1:], (kh, kw), s, p, d)
    sym = p[0][0] == p[0][1] and p[1][0] == p[1][1]  # the layer language pads both sides alike
    pad_opt = f" p={axis_text((p[0][0], p[1][0]))}" if sym else ""
    layer = f"conv f={axis_text((kh, kw))} s={axis_text(s)}{pad_opt} d={axis_text(d)}"
    check_trace_grid("convolution", *_conv_grid_parts(xc.shape[1:], p, padding, d), layer, xc.shape)
    xp = pad2d(xc, p, padding_mode)
    out, steps, step_lines = conv_core(xp, kernels, s, d, b, squeeze, g)
    formulas = [
        axis_formula("H", xc.shape[1], kh, s[0], p[0], d[0], ho),
        axis_formula("W", xc.shape[2], kw, s[1], p[1], d[1], wo),
    ]
    formula = "; ".join(formulas)
    notes = floor_notes(("H", "W"), xc.shape[1:], (kh, kw), s, p, d)
    if padding == "same":
        notes += same_notes(("H", "W"), xc.shape[1:], (kh, kw), s, d)
    notes += [note] if (note := dilation_note((kh, kw), d)) else []
    kind = "textbook convolution (kernel flipped)" if flip else "cross-correlation, as PyTorch computes it"
    lines = [
        f"Convolution ({kind})",
        f"input {shape_text(xc[0] if squeeze else xc)}, {f} filter(s) of "
        f"{shape_text(kernels[0, 0] if squeeze else kernels[0])}, stride {s}, padding {pad_text(p)} "
        f"({padding_mode}), dilation {d}",
        *(
            [f"groups {g}: {c} channels in {g} groups of {c // g}; {f} filters in {g} groups of {f // g}"]
            if g > 1
            else []
        ),
        "Output size:",
        *("  " + part for part in formulas),
        *(f"  note: {note}" for note in notes),
        *block_lines(f"Padded input ({shape_text(xp[0])}):", xp),
    ]
    for fi in range(f):
        title = "Kernel" + (f" {fi}" if f > 1 else "") + (" (after the 180-degree flip)" if flip else "")
        lines += block_lines(f"{title}:", kernels[fi])
    lines += step_lines
    lines += block_lines(f"Output ({f}x{ho}x{wo}):" if f > 1 else f"Output ({ho}x{wo}):", out)
    lines.append(FLIP_NOTE if flip else CROSS_CORRELATION_NOTE)
    return {
        "operation": "conv",
        "output": to_list(out if f > 1 else out[0]),
        "output_shape": list(out.shape if f > 1 else out.shape[1:]),
        "steps": steps,
        "padded_input": channel_view(xp, squeeze),
        "kernel": to_list(kernels if f > 1 else (kernels[0, 0] if squeeze else kernels[0])),
        "formula": formula,
        "notes": notes,
        "settings": {
            "stride": list(s),
            "padding": [list(p[0]), list(p[1])],
            "dilation": list(d),
            "padding_mode": padding_mode,
            "flip": flip,
            "bias": to_list(b),
            "groups": g,
        },
        "lines": lines,
    }


def _groups(groups: int, channels: int) -> int:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int; received groups={groups!r}. Use groups=1 or more.")
    if channels % groups:
        fits = ", ".join(str(n) for n in range(1, channels + 1) if channels % n == 0)
        raise ValueError(
            f"in_channels must be divisible by groups (each group sees in_channels/groups channels); "
            f"received in_channels={channels}, groups={groups}. Use groups that divides {channels}: {fits}."
        )
    return groups


def _bias_vector(bias: float | Sequence[float], f: int) -> np.ndarray:
    """One bias per filter (F,) from one number or F numbers."""
    b = np.asarray(bias, dtype=np.float64)
    if b.ndim == 0:
        return np.full(f, float(b))
    if b.shape != (f,):
        values = ", ".join(num(float(v)) for v in b.ravel())
        raise ValueError(
            f"bias (--bias) must be one number, or one per filter ({f} filter{'s' if f > 1 else ''}); received "
            f"{b.size} numbers ({values}). Give one number for all filters"
            f"{f', or {f} numbers, one per filter' if f > 1 else ''}."
        )
    return b


def _conv_grid_parts(
    size: tuple[int, ...], p: Pads, padding: object, d: tuple[int, int]
) -> tuple[tuple[int, int], list[GridPart]]:
    """The padded input a conv trace slides over, and what makes it that large."""
    grid = (size[0] + sum(p[0]), size[1] + sum(p[1]))
    a = 0 if grid[0] >= grid[1] else 1
    if isinstance(padding, str):  # 'same' pads by about dilation*(kernel-1)
        cause = ("dilation", str(d), sum(p[a]))
    else:
        cause = ("padding", pad_text(p), sum(p[a]))
    return grid, [("input", f"{size[0]}x{size[1]}", size[a]), cause]


def _pool_value(win: np.ndarray, mode: str, divisor: int) -> tuple[float, dict[str, Any]]:
    """Pool one window (kh, kw) whose pad/outside cells are NaN; return value and step fields."""
    real = win[~np.isnan(win)]
    if mode == "max":
        flat = np.where(np.isnan(win), -np.inf, win).ravel()
        best = int(np.argmax(flat))  # first maximum in row-major order, as PyTorch picks it
        return float(flat[best]), {
            "max": to_list(flat[best]),
            "argmax": [best // win.shape[1], best % win.shape[1]],
        }
    total = float(real.sum())
    if mode == "sum":
        return total, {"sum": to_list(np.float64(total))}
    return total / divisor, {"sum": to_list(np.float64(total)), "divisor": divisor}


def _pool_formula(axis: str, n: int, p: int, k: int, s: int, ceil_mode: bool) -> str:
    """PyTorch's pooling size rule with the numbers filled in, including ceil mode's dropped window."""
    rule = "ceil" if ceil_mode else "floor"
    span = n + 2 * p - k
    raw = (-(-span // s) if ceil_mode else span // s) + 1
    text = f"{axis}_out = {rule}(({axis} + 2p - k) / s) + 1 = {rule}(({n} + 2*{p} - {k}) / {s}) + 1 = {raw}"
    if ceil_mode and (raw - 1) * s >= n + p:
        text += (
            f", but the last window would start in the right padding ((out-1)*s = {(raw - 1) * s} >= "
            f"{axis} + p = {n + p}), so PyTorch drops it: {raw - 1}"
        )
    return text


def explain_pool(
    x: ArrayInput,
    kernel: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    mode: str = "max",
    ceil_mode: bool = False,
) -> dict[str, Any]:
    """Trace max / average / sum pooling window by window (PyTorch's rules: stride defaults to the
    kernel, average counts zero padding in the divisor, ceil_mode drops windows starting in the padding).

    >>> explain_pool("1 2; 3 4", 2)["output"]
    [[4]]
    """
    if mode not in ("max", "avg", "sum"):
        raise ValueError(f"mode must be 'max', 'avg' or 'sum'; received {mode!r}. Use mode='max'.")
    xc, squeeze = prepare_input(x)
    k = positive_pair(kernel, "kernel")
    s = k if stride is None else positive_pair(stride, "stride")
    p = pads(padding)
    (ph, _), (pw, _) = p
    c, h, w = xc.shape
    ho, wo = pool_out((h, w), k, s, (ph, pw), ceil_mode=ceil_mode)  # PyTorch's rules, checked there
    # (C, Hp + extra, Wp + extra); NaN ('.') marks cells no window value may use: the padding for max
    # pooling (PyTorch pads with -inf) and, in ceil mode, cells beyond the padded input
    extra = (max(0, (ho - 1) * s[0] + k[0] - h - 2 * ph), max(0, (wo - 1) * s[1] + k[1] - w - 2 * pw))
    a = 0 if h + 2 * ph >= w + 2 * pw else 1
    check_trace_grid(
        f"{mode} pooling",
        (h + 2 * ph + extra[0], w + 2 * pw + extra[1]),
        [("input", f"{h}x{w}", (h, w)[a]), ("padding", str((ph, pw)), 2 * (ph, pw)[a])],
        f"{'avgpool' if mode == 'avg' else 'pool'} f={axis_text(k)} s={axis_text(s)} p={axis_text((ph, pw))}"
        + (" ceil=1" if ceil_mode else ""),
        xc.shape,
    )
    grid = pad2d(xc, ((ph, ph), (pw, pw)), "zeros", fill=np.nan if mode == "max" else 0.0)
    grid = pad2d(grid, ((0, extra[0]), (0, extra[1])), "zeros", fill=np.nan)
    out = np.zeros((c, ho, wo))
    steps: list[dict[str, Any]] = []
    step_lines: list[str] = []
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                r0, c0 = i * s[0], j * s[1]
                win = grid[ch, r0 : r0 + k[0], c0 : c0 + k[1]]
                # PyTorch's avg divisor counts zero padding but not cells beyond it (count_include_pad=True)
                value, fields = _pool_value(win, mode, int((~np.isnan(win)).sum()))
                out[ch, i, j] = value
                step = {
                    "channel": ch,
                    "position": [i, j],
                    "rows": [r0, r0 + k[0] - 1],
                    "cols": [c0, c0 + k[1] - 1],
                    "window": to_list(win),
                    **fields,
                    "value": to_list(out[ch, i, j]),
                }
                if mode == "max":
                    r, cc = fields["argmax"]
                    step["index"] = (r0 + r - ph) * w + (c0 + cc - pw)  # flat H*W index, like return_indices
                steps.append(step)
                step_lines += _pool_step_lines(step, win, mode, c > 1)
    formulas = [
        _pool_formula(a, n, pp, kk, ss, ceil_mode)
        for a, n, pp, kk, ss in (("H", h, ph, k[0], s[0]), ("W", w, pw, k[1], s[1]))
    ]
    formula = "; ".join(formulas)
    # ceil mode keeps a last partial window instead, and says so in its formula
    notes = [] if ceil_mode else floor_notes(("H", "W"), (h, w), k, s, ((ph, ph), (pw, pw)))
    pad_text = (
        "max pooling ignores the padding ('.'; PyTorch pads with -inf)"
        if mode == "max"
        else "zero padding counts in the window, as PyTorch's default count_include_pad=True does"
    )
    if ceil_mode:
        pad_text += "; '.' beyond the padding is never counted"
    lines = [
        f"{mode} pooling: input {shape_text(xc[0] if squeeze else xc)}, kernel {k}, stride {s}, "
        f"padding {(ph, pw)}, ceil_mode {ceil_mode}; {pad_text}",
        "Output size:",
        *("  " + part for part in formulas),
        *(f"  note: {note}" for note in notes),
        *block_lines(f"Padded input ({shape_text(grid[0])}):", grid),
        *step_lines,
        *block_lines(f"Output ({shape_text(out[0] if squeeze else out)}):", out),
    ]
    return {
        "operation": "pool",
        "mode": mode,
        "output": channel_view(out, squeeze),
        "output_shape": list(out.shape[1:] if squeeze else out.shape),
        "steps": steps,
        "padded_input": channel_view(grid, squeeze),
        "formula": formula,
        "notes": notes,
        "settings": {"kernel": list(k), "stride": list(s), "padding": [ph, pw], "ceil_mode": ceil_mode},
        "lines": lines,
    }


def _pool_step_lines(step: dict[str, Any], win: np.ndarray, mode: str, many: bool) -> list[str]:
    i, j = step["position"]
    head = f"channel {step['channel']} " if many else ""
    lines = [
        f"{head}output[{i}, {j}]: window rows {step['rows'][0]}-{step['rows'][1]}, "
        f"cols {step['cols'][0]}-{step['cols'][1]}",
        *matrix_lines(win, "    "),
    ]
    cells = [num(float(v)) for v in win.ravel() if not np.isnan(v)]
    if mode == "max":
        lines.append(
            f"    max({', '.join(cells)}) = {num(float(step['value']))} (input index {step['index']})"
        )
    elif mode == "sum":
        lines.append(f"    sum = {' + '.join(cells)} = {num(float(step['value']))}")
    else:
        lines.append(f"    ({' + '.join(cells)}) / {step['divisor']} = {num(float(step['value']))}")
    return lines


def _zero_insert(x: np.ndarray, s: tuple[int, int]) -> np.ndarray:
    """(C, H, W) -> (C, (H-1)s+1, (W-1)s+1) with s-1 zeros between neighbouring pixels."""
    c, h, w = x.shape
    z = np.zeros((c, (h - 1) * s[0] + 1, (w - 1) * s[1] + 1))
    z[:, :: s[0], :: s[1]] = x
    return z


def _transposed_grid_parts(
    size: tuple[int, ...], s: tuple[int, int], q: tuple[int, int], op: tuple[int, int], d: tuple[int, int]
) -> tuple[tuple[int, int], list[GridPart]]:
    """The zero-inserted, padded input a transposed-conv trace slides over, and what makes it large."""
    # (i-1)*s + 1 after zero insertion, plus d(k-1)-p on each side (negative crops) and output_padding
    grid = (
        (size[0] - 1) * s[0] + 1 + 2 * q[0] + op[0],
        (size[1] - 1) * s[1] + 1 + 2 * q[1] + op[1],
    )
    a = 0 if grid[0] >= grid[1] else 1
    return grid, [
        ("input", f"{size[0]}x{size[1]}", size[a]),
        ("stride", str(s), (size[a] - 1) * (s[a] - 1)),
        ("dilation" if d[a] > 1 else "kernel size", str(d) if d[a] > 1 else "its size", 2 * max(q[a], 0)),
    ]


def explain_transposed(
    x: ArrayInput,
    w: ArrayInput,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> dict[str, Any]:
    """Trace a transposed convolution as the equivalent zero-inserted convolution (Dumoulin & Visin,
    section 4): insert s-1 zeros between inputs, pad each side by d(k-1)-p (plus output_padding on the
    bottom/right), flip the kernel by 180 degrees and convolve with stride 1.

    x: (H, W) or (C, H, W); w: (kh, kw), (C, kh, kw) or PyTorch's layout (C, F, kh, kw).

    >>> explain_transposed("1 2; 3 4", "1 1; 1 1")["output"]
    [[1, 3, 2], [4, 10, 6], [3, 7, 4]]
    """
    xc, squeeze = prepare_input(x)
    wa = as_array(w, "kernel")
    # PyTorch's ConvTranspose weight is (C_in, F, kh, kw); the equivalent conv needs (F, C_in, kh, kw)
    kernels = kernels_of(xc, wa.swapaxes(0, 1) if wa.ndim == 4 else wa)
    s, d = positive_pair(stride, "stride"), positive_pair(dilation, "dilation")
    p, op = pads(padding), pads(output_padding, "output_padding")
    (ph, _), (pw, _) = p
    oph, opw = op[0][0], op[1][0]
    kh, kw = kernels.shape[-2:]
    # validates output_padding < max(stride, dilation) and a non-empty output, as PyTorch does
    conv_transpose_out(xc.shape[1:], (kh, kw), s, (ph, pw), (oph, opw), d)
    q = (d[0] * (kh - 1) - ph, d[1] * (kw - 1) - pw)  # equivalent padding d(k-1)-p per side
    layer = (
        f"convT f={axis_text((kh, kw))} s={axis_text(s)} p={axis_text((ph, pw))} "
        f"op={axis_text((oph, opw))} d={axis_text(d)}"
    )
    grid, parts = _transposed_grid_parts(xc.shape[1:], s, q, (oph, opw), d)
    check_trace_grid("transposed convolution", grid, parts, layer, xc.shape)
    z = _zero_insert(xc, s)
    # negative equivalent padding crops: pad by max(q, 0), then cut max(-q, 0) from each side
    zp = pad2d(z, ((max(q[0], 0), max(q[0], 0) + oph), (max(q[1], 0), max(q[1], 0) + opw)))
    crop = (max(-q[0], 0), max(-q[1], 0))
    zp = zp[:, crop[0] : zp.shape[1] - crop[0], crop[1] : zp.shape[2] - crop[1]]
    flipped = kernels[..., ::-1, ::-1]
    out, steps, step_lines = conv_core(zp, flipped, (1, 1), d, np.zeros(len(kernels)), squeeze)
    f = len(kernels)
    formulas = [
        f"{a}_out = (i-1)*s - 2p + d(k-1) + output_padding + 1 = "
        f"({n}-1)*{ss} - 2*{pp} + {dd}*({kk}-1) + {o} + 1"
        f" = {(n - 1) * ss - 2 * pp + dd * (kk - 1) + o + 1}"
        for a, n, ss, pp, dd, kk, o in (
            ("H", xc.shape[1], s[0], ph, d[0], kh, oph),
            ("W", xc.shape[2], s[1], pw, d[1], kw, opw),
        )
    ]
    formula = "; ".join(formulas)
    lines = [
        "Transposed convolution shown as an equivalent convolution (Dumoulin & Visin, 'A guide to "
        "convolution arithmetic', section 4)",
        f"input {shape_text(xc[0] if squeeze else xc)}, kernel {kh}x{kw}, stride {s}, padding {(ph, pw)}, "
        f"output_padding {(oph, opw)}, dilation {d}",
        f"1. insert s-1 = {(s[0] - 1, s[1] - 1)} zero(s) between input pixels: "
        f"{xc.shape[1]}x{xc.shape[2]} -> {z.shape[1]}x{z.shape[2]} (i~ = i + (i-1)(s-1))",
        f"2. pad each side by d(k-1)-p = {q} zero(s)"
        + (f", plus output_padding {(oph, opw)} on the bottom/right" if oph or opw else "")
        + (" (a negative amount crops)" if min(q) < 0 else "")
        + f": -> {zp.shape[1]}x{zp.shape[2]}",
        "3. flip the kernel by 180 degrees",
        "4. convolve with stride 1 (cross-correlation with the flipped kernel):",
        "Output size:",
        *("  " + part for part in formulas),
        *block_lines(f"Zero-inserted, padded input ({shape_text(zp[0])}):", zp),
    ]
    for fi in range(f):
        lines += block_lines("Flipped kernel" + (f" {fi}" if f > 1 else "") + ":", flipped[fi])
    lines += step_lines
    lines += block_lines(f"Output ({shape_text(out if f > 1 else out[0])}):", out)
    lines.append(
        "Equivalently, each input pixel scatters pixel * kernel onto the output at stride s and the "
        "overlaps add up; padding p then crops p rows/columns from each side."
    )
    return {
        "operation": "transposed",
        "output": to_list(out if f > 1 else out[0]),
        "output_shape": list(out.shape if f > 1 else out.shape[1:]),
        "steps": steps,
        "padded_input": channel_view(zp, squeeze),
        "zero_inserted": channel_view(z, squeeze),
        "equivalent": {
            "input_size": [xc.shape[1], xc.shape[2]],
            "zero_inserted_size": [z.shape[1], z.shape[2]],
            "padding": list(q),
            "padded_size": [zp.shape[1], zp.shape[2]],
            "stride": 1,
            "kernel_flipped": to_list(flipped if f > 1 else (flipped[0, 0] if squeeze else flipped[0])),
        },
        "formula": formula,
        "settings": {
            "stride": list(s),
            "padding": [ph, pw],
            "output_padding": [oph, opw],
            "dilation": list(d),
        },
        "lines": lines,
    }
