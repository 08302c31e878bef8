"""Convolution-arithmetic animations (after Dumoulin & Visin 2016) for any sizes the user gives.

Each frame shows the padded input with the kernel's taps highlighted (dilation spreads them out,
stride moves them), the kernel's weights (when values are printed; pooling has none) and the output
filling in cell by cell, so each output value can be checked by hand. A transposed convolution is drawn the way
Dumoulin & Visin explain it: the equivalent direct convolution, with ``s - 1`` zeros inserted between
input cells, ``d(k - 1) - p`` cells of padding around them (``output_padding`` more at the bottom and
right) and the kernel flipped. Output sizes come from :mod:`cnnlab.arith`; the values drawn are the
sums (or maxima) of the highlighted products, which tests compare with ``torch.nn.functional``.

>>> a = conv_animation("conv", 5, 3, s=2, p=1)
>>> a.output.shape, a.frames
((3, 3), 9)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cnnlab.arith import conv_out, conv_transpose_out, pool_out

__all__ = ["KINDS", "Animation", "conv_animation", "direct_form"]

KINDS = ("conv", "transposed", "pool")
MAX_FRAMES = 240  # larger outputs fill several cells per frame
MAX_CELLS = 160  # padded input side beyond which drawing would be unreadable
VALUE_LIMIT = 16  # values are printed when the padded input has at most this many cells per side

# Frames are drawn in palette mode with this fixed palette, so the GIF needs no per-frame quantizing.
_PALETTE = [
    (255, 255, 255),
    (0, 0, 0),
    (120, 120, 120),
    (225, 225, 225),
    (190, 215, 255),
    (248, 248, 248),
    (255, 165, 60),
    (150, 215, 150),
    (40, 160, 40),
]
_EMPTY, _TEXT, _LINE, _PAD, _INPUT, _ZERO, _TAP, _DONE, _NOW = range(len(_PALETTE))


@dataclass
class Animation:
    """What :func:`conv_animation` drew: the values, the frame count and size, and the files written."""

    kind: str
    input: np.ndarray  # (n, n) input values
    kernel: np.ndarray  # (k, k) kernel values (ones for pooling, unused)
    grid: np.ndarray  # (m, m) the padded (and for transposed: zero-stuffed) grid the kernel slides on
    is_pad: np.ndarray  # (m, m) True where grid cells are padding or inserted zeros
    output: np.ndarray  # (o, o) the values the animation computes
    frames: int
    frame_size: tuple[int, int]  # (width, height) in pixels
    path: Path | None = None
    frame_paths: tuple[Path, ...] = ()
    stale_frames: int = 0  # frame_NNNN.png files of an earlier animation removed from frames_dir


def direct_form(
    kind: str, x: np.ndarray, k: int, s: int, p: int, d: int, output_padding: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """The grid the kernel slides over, its padding mask and the stride of the slide.

    conv / pool: ``x`` padded by ``p`` (stride ``s``); transposed: ``x`` with ``s - 1`` zeros between
    cells, padded by ``d(k-1) - p`` (+ ``output_padding`` bottom/right; cropped when negative), stride 1.

    >>> direct_form("transposed", np.ones((2, 2)), 3, 2, 0, 1)[0].shape
    (7, 7)
    """
    n = x.shape[0]
    if kind != "transposed":
        fill = -np.inf if kind == "pool" else 0.0
        grid = np.pad(x.astype(float), p, constant_values=fill)
        mask = np.pad(np.zeros_like(x, bool), p, constant_values=True)
        return grid, mask, s
    stuffed_n = (n - 1) * s + 1
    grid = np.zeros((stuffed_n, stuffed_n))
    mask = np.ones((stuffed_n, stuffed_n), bool)
    grid[::s, ::s] = x
    mask[::s, ::s] = False
    q = d * (k - 1) - p
    if q >= 0:
        pads = ((q, q + output_padding), (q, q + output_padding))
        return np.pad(grid, pads), np.pad(mask, pads, constant_values=True), 1
    # negative padding crops the stuffed input (padding larger than the dilated kernel)
    grid = np.pad(grid, ((0, output_padding), (0, output_padding)))[-q : q or None, -q : q or None]
    mask = np.pad(mask, ((0, output_padding), (0, output_padding)), constant_values=True)[
        -q : q or None, -q : q or None
    ]
    return grid, mask, 1


def _expected_out(kind: str, n: int, k: int, s: int, p: int, d: int, op: int) -> int:
    if kind == "conv":
        return conv_out(n, k, s, p, d)[0]
    if kind == "pool":
        return pool_out(n, k, s, p, d)[0]
    return conv_transpose_out(n, k, s, p, op, d)[0]


# the CLI's defaults, for the example in a message
_EXAMPLE = {"--input": 5, "--kernel": 3, "--stride": 1, "--padding": 0, "--dilation": 1, "--output-padding": 0}


def _check(kind: str, n: int, k: int, s: int, p: int, d: int, op: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; received {kind!r}.")
    for name, v, lo in (
        ("--input", n, 1),
        ("--kernel", k, 1),
        ("--stride", s, 1),
        ("--padding", p, 0),
        ("--dilation", d, 1),
        ("--output-padding", op, 0),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(
                f"{name} must be an integer >= {lo}; received {v!r}. Use {name} {lo} or more, e.g. "
                f"{name} {max(lo, _EXAMPLE[name])}."
            )
    if kind != "transposed" and op:
        raise ValueError(
            f"--output-padding applies to transposed convolutions only; received --output-padding {op} for {kind}. "
            "Drop --output-padding, or animate transposed."
        )
    if kind == "pool" and 2 * p > k:
        raise ValueError(
            f"--padding must be at most half of --kernel for pooling (PyTorch's rule: no window may lie wholly "
            f"in the padding); received --padding {p} with --kernel {k}. Use --padding {k // 2} or less, or "
            f"--kernel {2 * p} or more."
        )
    if kind == "transposed" and op >= max(s, d):
        most = max(s, d) - 1
        raise ValueError(
            f"--output-padding must be smaller than --stride or --dilation; received --output-padding {op} with "
            f"--stride {s}, --dilation {d}. Use --output-padding {most}{' or less' if most else ''}, or a larger "
            "--stride."
        )


def _too_wide(kind: str, m: int, n: int, k: int, s: int, p: int, d: int, op: int) -> str:
    """The message for a grid wider than MAX_CELLS, with what makes it that wide."""
    if kind != "transposed":
        return (
            f"the padded input would be {m} cells wide (--input {n} + 2*--padding {p}); animations are drawn up "
            f"to {MAX_CELLS}. Use a smaller --input or --padding (the arithmetic is the same at any size)."
        )
    return (
        f"the zero-inserted, padded input would be {m} cells wide ((--input {n} - 1)*--stride {s} + 1 + "
        f"2*(--dilation {d}*(--kernel {k} - 1) - --padding {p}) + --output-padding {op}); animations are drawn "
        f"up to {MAX_CELLS}. Use a smaller --input or --stride (the arithmetic is the same at any size)."
    )


def _check_not_empty(kind: str, n: int, k: int, s: int, p: int, d: int, op: int) -> None:
    """The empty-output rules of :mod:`cnnlab.arith`, worded with the command's options."""
    if kind != "transposed":
        span = d * (k - 1) + 1  # the dilated kernel's extent
        if n + 2 * p < span:
            need = -(-(span - n) // 2)  # ceil((span - n) / 2)
            raise ValueError(
                f"--input {n} with --padding {p} gives a padded input of {n + 2 * p} cells per side, fewer than "
                f"the {span} cells the kernel spans (--kernel {k}, --dilation {d}), so the {kind} output would "
                f"be empty. Use --padding {need} or more, a smaller --kernel or --dilation, or a larger --input."
            )
        return
    out = (n - 1) * s - 2 * p + d * (k - 1) + op + 1  # the transposed conv's output side
    if out < 1:
        most = ((n - 1) * s + d * (k - 1) + op) // 2
        raise ValueError(
            f"--padding {p} crops more than the transposed convolution makes: (input-1)*stride - 2*padding + "
            f"dilation*(kernel-1) + output_padding + 1 = {out} cells per side (--input {n}, --stride {s}, "
            f"--kernel {k}, --dilation {d}, --output-padding {op}). Use --padding {most}{' or less' if most else ''}, "
            "or a larger --kernel, --stride or --input."
        )


def _values(kind: str, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10, size=(n, n)).astype(float)
    kernel = np.ones((k, k)) if kind == "pool" else rng.integers(-1, 3, size=(k, k)).astype(float)
    return x, kernel


def conv_animation(
    kind: str,
    n: int,
    k: int,
    s: int = 1,
    p: int = 0,
    d: int = 1,
    *,
    output_padding: int = 0,
    path: str | os.PathLike[str] | None = None,
    frames_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    duration_ms: int = 600,
) -> Animation:
    """Animate a 2-D ``kind`` ("conv", "transposed", "pool") on an ``n x n`` input with a ``k x k`` kernel.

    Writes a looping GIF to ``path`` and one PNG per frame to ``frames_dir`` when given. Raises
    ValueError (naming the option) for impossible numbers, with the rule from :mod:`cnnlab.arith`.
    """
    _check(kind, n, k, s, p, d, output_padding)
    _check_not_empty(kind, n, k, s, p, d, output_padding)
    # the grid's side from the numbers alone, checked before any array is made (--stride 10**8 would ask
    # for exabytes): n + 2p, or for transposed (n-1)s + 1 + 2(d(k-1) - p) + output_padding
    side = n + 2 * p if kind != "transposed" else (n - 1) * s + 1 + 2 * (d * (k - 1) - p) + output_padding
    if n > MAX_CELLS:  # a transposed conv's padding may crop the grid below n; the input is drawn whole
        raise ValueError(
            f"--input {n} is wider than the {MAX_CELLS} cells animations are drawn up to. Use --input "
            f"{MAX_CELLS} or less (the arithmetic is the same at any size)."
        )
    if side > MAX_CELLS:
        raise ValueError(_too_wide(kind, side, n, k, s, p, d, output_padding))
    o = _expected_out(kind, n, k, s, p, d, output_padding)
    x, kernel = _values(kind, n, k, seed)
    grid, mask, step = direct_form(kind, x, k, s, p, d, output_padding)
    taps_kernel = kernel[::-1, ::-1] if kind == "transposed" else kernel  # transposed = flipped kernel
    out = np.zeros((o, o))
    for i in range(o):
        for j in range(o):
            window = grid[i * step : i * step + d * (k - 1) + 1 : d, j * step : j * step + d * (k - 1) + 1 : d]
            out[i, j] = window.max() if kind == "pool" else float((window * taps_kernel).sum())
    anim = Animation(kind, x, kernel, grid, mask, out, 0, (0, 0))
    _render(anim, k, d, step, taps_kernel, path, frames_dir, duration_ms, (n, k, s, p, d, output_padding))
    return anim


def _layout(m: int, o: int) -> tuple[int, bool]:
    show = max(m, o) <= VALUE_LIMIT
    cell = 30 if show else max(4, min(24, 420 // max(m, 1)))
    return cell, show


def _cell(draw: ImageDraw.ImageDraw, x0: int, y0: int, cell: int, rc: tuple[int, int], colour: int, text: str) -> None:
    r, c = rc
    box = (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell - 1, y0 + (r + 1) * cell - 1)
    draw.rectangle(box, fill=colour, outline=_LINE)
    if text:
        draw.text((box[0] + 3, box[1] + cell // 2 - 6), text, fill=_TEXT)


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:g}"


def _render(
    anim: Animation,
    k: int,
    d: int,
    step: int,
    taps_kernel: np.ndarray,
    path: str | os.PathLike[str] | None,
    frames_dir: str | os.PathLike[str] | None,
    duration_ms: int,
    numbers: tuple[int, ...],
) -> None:
    m, o = anim.grid.shape[0], anim.output.shape[0]
    cell, show = _layout(m, o)
    n, _, s, p, _, op = numbers
    label = "max pool" if anim.kind == "pool" else anim.kind  # pooling is drawn as max pooling
    title = f"{label}: input {n}x{n}, k={k}, s={s}, p={p}, d={d}" + (f", op={op}" if op else "")
    title += f" -> output {o}x{o}"
    lines = [title]
    if anim.kind == "transposed":  # the grid is the equivalent direct convolution's, which the title must say
        q = d * (k - 1) - p
        pad = f"pad d(k-1)-p = {q}" if q >= 0 else f"crop p-d(k-1) = {-q}"
        lines.append(f"drawn as a conv: {s - 1} zero(s) between inputs, {pad}, flipped kernel, stride 1")
    # the kernel's weights (flipped for transposed), so every output value can be checked by hand; pooling
    # has no weights, and without printed values there is nothing to read
    kernel_label = "flipped kernel" if anim.kind == "transposed" else "kernel"
    show_kernel = show and anim.kind != "pool"
    gap, top = 40, 8 + 14 * len(lines)
    kernel_w = k * cell + gap if show_kernel else 0
    width = 10 + m * cell + gap + kernel_w + o * cell + 10
    height = top + max(m * cell, o * cell, (k * cell + 16) if show_kernel else 0) + 10
    base_in = np.where(anim.is_pad, _PAD if anim.kind != "transposed" else _ZERO, _INPUT)  # (m, m) palette ids
    in_text = [[_fmt(v) if show else "" for v in row] for row in anim.grid]
    kernel_x = 10 + m * cell + gap
    out_x = kernel_x + kernel_w
    # the canvas keeps the input grid and the output filled so far; each frame adds the kernel's taps
    canvas = Image.new("P", (width, height), _EMPTY)
    canvas.putpalette([v for rgb in _PALETTE for v in rgb])
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((10, 5 + 14 * i), line, fill=_TEXT)
    if show_kernel:
        for r in range(k):
            for c in range(k):
                _cell(draw, kernel_x, top, cell, (r, c), _TAP, _fmt(taps_kernel[r, c]))
        draw.text((kernel_x, top + k * cell + 3), kernel_label, fill=_TEXT)
    for r in range(m):
        for c in range(m):
            _cell(draw, 10, top, cell, (r, c), int(base_in[r, c]), in_text[r][c])
    for r in range(o):
        for c in range(o):
            _cell(draw, out_x, top, cell, (r, c), _EMPTY, "")
    positions = [(i, j) for i in range(o) for j in range(o)]
    per_frame = max(1, -(-len(positions) // MAX_FRAMES))
    frames: list[Image.Image] = []
    previous: tuple[int, int] | None = None
    for f0 in range(0, len(positions), per_frame):
        current = positions[f0 : f0 + per_frame]
        for rc in ([previous] if previous else []) + current:
            colour = _NOW if rc == current[-1] else _DONE
            _cell(draw, out_x, top, cell, rc, colour, _fmt(anim.output[rc]) if show else "")
        previous = current[-1]
        frame = canvas.copy()
        fdraw = ImageDraw.Draw(frame)
        i, j = current[-1]
        for a in range(k):
            for b in range(k):
                rc = (i * step + a * d, j * step + b * d)
                _cell(fdraw, 10, top, cell, rc, _TAP, in_text[rc[0]][rc[1]])
        frames.append(frame)
    anim.frames, anim.frame_size = len(frames), (width, height)
    if frames_dir is not None:
        folder = Path(frames_dir)
        folder.mkdir(parents=True, exist_ok=True)
        anim.stale_frames = _remove_frames(folder)
        anim.frame_paths = tuple(_save(fr, folder / f"frame_{i:04d}.png") for i, fr in enumerate(frames))
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        durations = [duration_ms] * (len(frames) - 1) + [duration_ms * 4]  # linger on the full output
        frames[0].save(
            target,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
            disposal=1,
        )
        anim.path = target


def _remove_frames(folder: Path) -> int:
    """Delete the ``frame_NNNN.png`` files of an earlier animation (they would mix with the new ones)."""
    old = [f for f in folder.glob("frame_*.png") if re.fullmatch(r"frame_\d+\.png", f.name) and f.is_file()]
    for f in old:
        f.unlink()
    return len(old)


def _save(img: Image.Image, p: Path) -> Path:
    img.convert("RGB").save(p, format="PNG")
    return p
