"""Reading matrices typed by people, and writing numbers and matrices back as text.

Used by :mod:`cnnlab.reference.explain`; kept apart so the arithmetic there stays readable.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

_ROW_SPLIT = re.compile(r"[;\n]+")
_NUM_SPLIT = re.compile(r"[,\s]+")
_HOWTO = (
    "Separate numbers with spaces or commas, rows with ';' or newlines, channels with '|' and filters "
    "with '||', for example '1 2 3; 4 5 6'."
)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 80 else flat[:77] + "..."


def _echo(text: str, name: str | None) -> str:
    """The received text, quoted and shortened, named after the argument when known."""
    return f"{name}={_short(text)!r}" if name else repr(_short(text))


def _parse_rows(block: str, where: str, original: str, name: str | None) -> list[list[float]]:
    rows: list[list[float]] = []
    for line in _ROW_SPLIT.split(block):
        tokens = [t for t in _NUM_SPLIT.split(line.strip()) if t]
        if not tokens:
            continue  # a trailing ';' or blank line
        values = []
        for col, token in enumerate(tokens, start=1):
            try:
                value = float(token)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(
                    f"matrix text: {token!r} in row {len(rows) + 1}, column {col}{where} is not a finite "
                    f"number. Received {_echo(original, name)}. {_HOWTO}"
                )
            values.append(value)
        if rows and len(values) != len(rows[0]):
            raise ValueError(
                f"matrix text is not rectangular: row {len(rows) + 1}{where} has {len(values)} numbers but "
                f"row 1 has {len(rows[0])}. Every row needs the same count. "
                f"Received {_echo(original, name)}. {_HOWTO}"
            )
        rows.append(values)
    if not rows:
        raise ValueError(f"matrix text{where} holds no numbers. Received {_echo(original, name)}. {_HOWTO}")
    return rows


def _parse_json(text: str, name: str | None) -> np.ndarray:
    try:
        arr = np.asarray(json.loads(text), dtype=np.float64)
    except (json.JSONDecodeError, ValueError, TypeError) as err:
        raise ValueError(
            f"matrix text looks like a bracketed list but is not a rectangular list of numbers ({err}). "
            f"Received {_echo(text, name)}. Write it as '[[1, 2], [3, 4]]' or as '1 2; 3 4'."
        ) from None
    if arr.ndim < 2 or not np.isfinite(arr).all():
        raise ValueError(
            f"matrix text must be a 2-D or deeper list of finite numbers; received shape {arr.shape} from "
            f"{_echo(text, name)}. Write it as '[[1, 2], [3, 4]]' or as '1 2; 3 4'."
        )
    return arr


def parse_matrix(text: str, *, name: str | None = None) -> np.ndarray:
    """Parse a matrix typed inline into a float64 array.

    ``"1 2 3; 4 5 6"`` -> shape (2, 3). Rows are separated by ``;`` or newlines, numbers by spaces or
    commas. ``|`` separates channels -> (C, H, W); ``||`` separates filters -> (F, C, H, W). A
    bracketed list such as ``"[[1, 0], [0, 1]]"`` is read as JSON. Raises ``ValueError`` naming the
    row and the counts when the text is not rectangular or not numeric; ``name`` (for example
    ``"kernel"``) is echoed with the received text so the message says which argument was wrong.

    >>> parse_matrix("1 2 3; 4 5 6").shape
    (2, 3)
    >>> parse_matrix("1 0; 0 1 | 2 2; 2 2").shape
    (2, 2, 2)
    """
    if not isinstance(text, str):
        raise ValueError(
            f"{name or 'matrix text'} must be a string such as '1 2; 3 4'; received {type(text).__name__}."
        )
    if text.strip().startswith("["):
        return _parse_json(text, name)
    filters = text.split("||")
    blocks: list[list[list[list[float]]]] = []
    for fi, ftext in enumerate(filters, start=1):
        channels = []
        for ci, ctext in enumerate(ftext.split("|"), start=1):
            where = ""
            if len(filters) > 1:
                where += f" of filter {fi}"
            if "|" in ftext:
                where += f" of channel {ci}"
            channels.append(_parse_rows(ctext, where, text, name))
        blocks.append(channels)
    shapes = {(len(ch), len(ch[0])) for f in blocks for ch in f}
    if len(shapes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(shapes))
        raise ValueError(
            f"matrix text: all channels and filters must have the same height and width, but found {listed}. "
            f"Received {_echo(text, name)}. {_HOWTO}"
        )
    if len({len(f) for f in blocks}) > 1:
        raise ValueError(
            f"matrix text: every filter needs the same number of channels, but found "
            f"{[len(f) for f in blocks]}. Received {_echo(text, name)}. {_HOWTO}"
        )
    arr = np.asarray(blocks, dtype=np.float64)  # (F, C, H, W)
    if len(filters) == 1:
        arr = arr[0]
        if arr.shape[0] == 1 and "|" not in text:
            arr = arr[0]
    return arr


def is_integral(arr: np.ndarray) -> bool:
    """True when every finite value is a whole number (so it prints and serialises as an int)."""
    finite = arr[np.isfinite(arr)]
    return bool(np.all(finite == np.round(finite)))


def to_list(arr: np.ndarray | np.floating[Any] | float, integral: bool | None = None) -> Any:
    """Nested lists of ints when all values are integral, else floats; NaN (a pad cell) -> None."""
    arr = np.asarray(arr, dtype=np.float64)
    if integral is None:
        integral = is_integral(arr)
    if arr.ndim == 0:
        value = float(arr)
        if math.isnan(value):
            return None
        return int(value) if integral and math.isfinite(value) else value
    return [to_list(a, integral) for a in arr]


def num(value: float) -> str:
    """Short text for one number: ``66``, ``2.5``, ``-inf``; NaN marks a pad cell and prints ``.``."""
    if math.isnan(value):
        return "."
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    if value == round(value) and abs(value) < 1e15:
        return str(round(value))
    return f"{value:.6g}"


def matrix_lines(arr: np.ndarray, indent: str = "  ") -> list[str]:
    """Right-aligned rows of a 2-D array."""
    cells = [[num(float(v)) for v in row] for row in np.atleast_2d(arr)]
    width = max(len(c) for row in cells for c in row)
    return [indent + " ".join(c.rjust(width) for c in row) for row in cells]


def side_by_side(blocks: list[list[str]], separators: list[str]) -> list[str]:
    """Join text blocks horizontally; ``separators[i]`` goes between block i and i+1 on the middle row."""
    height = max(len(b) for b in blocks)
    widths = [max(len(line) for line in b) for b in blocks]
    mid = (height - 1) // 2
    out = []
    for r in range(height):
        parts = []
        for i, block in enumerate(blocks):
            parts.append((block[r] if r < len(block) else "").ljust(widths[i]))
            if i < len(separators):
                sep = separators[i]
                parts.append(f" {sep} " if r == mid else " " * (len(sep) + 2))
        out.append("".join(parts).rstrip())
    return out
