"""One-sentence notes for the places where cnnlab's size rules differ from the textbook formulas.

The textbooks write the output size as ``(W + 2P - F)/S + 1`` without a floor, 'same' padding as
giving ``floor(n/s)``, and dilation in conventions that count the gaps; ``cnnlab explain`` computes
PyTorch's (and TensorFlow's) answer and prints these notes to say why it differs. Each function takes
the axis names and per-axis numbers, and returns one note per group of axes with the same numbers
(prefixed ``"H: "`` when the note holds for some axes only), or none.

>>> floor_notes(("H", "W"), (224, 224), (5, 5), (2, 2), ((2, 2), (2, 2)))
['223/2 = 111.5 is not whole, so the size is floored (112, not 112.5); the last 1 row/column of the \
padded input is never read by any window: it is padding, so no input value is lost']
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.arith._norm import Pair, ceil_div
from cnnlab.arith.sizes import effective_kernel, same_padding, skipped_inputs, unread_border

__all__ = ["dilation_note", "floor_notes", "same_notes"]

# what one step along an axis is called: (singular, plural), and the sides padding goes on
_UNIT = {"H": ("row", "rows"), "W": ("column", "columns"), "D": ("slice", "slices")}
_SIDES = {"H": ("top", "bottom"), "W": ("left", "right"), "D": ("front", "back")}


def _unit(axes: Sequence[str], count: int) -> str:
    # "row/column" for H, W; "position" for L
    return "/".join(_UNIT.get(a, ("position", "positions"))[count != 1] for a in axes)


def _sides(axes: Sequence[str]) -> tuple[str, str]:
    # ("top/left", "bottom/right") for H, W
    pairs = [_SIDES.get(a, ("left", "right")) for a in axes]
    return "/".join(p[0] for p in pairs), "/".join(p[1] for p in pairs)


def _grouped(axes: Sequence[str], keys: Sequence[tuple[int, ...] | None]) -> list[tuple[list[str], tuple[int, ...]]]:
    """Axes with the same numbers, in order of first appearance; axes whose key is None are left out."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for axis, key in zip(axes, keys):
        if key is not None:
            groups.setdefault(key, []).append(axis)
    return [(names, key) for key, names in groups.items()]


def _prefix(names: list[str], axes: Sequence[str]) -> str:
    return "" if len(names) == len(axes) else f"{', '.join(names)}: "


def _ratio(a: int, b: int) -> str:
    # a/b as a decimal: "111.5", or "0.667..." when it does not end within three places
    exact = (a * 1000) % b == 0
    return f"{a / b:.3f}".rstrip("0").rstrip(".") + ("" if exact else "...")


def floor_notes(
    axes: Sequence[str],
    n: Sequence[int],
    k: Sequence[int],
    s: Sequence[int],
    pairs: Sequence[Pair],
    d: Sequence[int] | None = None,
) -> list[str]:
    """Why the size is floored where the stride does not divide the padded span, and what is never read.

    The textbook ``(n + 2p - k)/s + 1`` has no floor; when the division is not whole the last windows
    would hang over the edge, so PyTorch drops them and the end of the padded input goes unread.

    >>> floor_notes(("H", "W"), (4, 5), (2, 2), (2, 2), ((0, 0), (0, 0)))[0].split(";")[0]
    'W: 3/2 = 1.5 is not whole, so the size is floored (2, not 2.5)'
    """
    ds = tuple(d) if d is not None else (1,) * len(n)
    keys: list[tuple[int, ...] | None] = []
    for ni, ki, si, pair, di in zip(n, k, s, pairs, ds):
        span = ni + pair[0] + pair[1] - effective_kernel(ki, di)[0]  # n + 2p - k_eff
        if span < 0:
            keys.append(None)
            continue
        unread, real = unread_border(ni, ki, si, (pair,), di)[0]
        inside = skipped_inputs(ni, ki, si, pair, di) - real  # input positions between the taps, never read
        floored = span % si != 0
        keys.append((span, si, unread, real, int(any(pair)), inside, ki, di, ni) if floored or inside else None)
    notes = []
    for names, (span, si, unread, real, padded, inside, ki, di, ni) in _grouped(axes, keys):
        gaps = f"{inside} input {_unit(names, inside)} inside the map {'is' if inside == 1 else 'are'} never read"
        taps = f"{ki} taps {di} apart" if ki > 1 and di > 1 else f"{ki} wide"
        why = f"the windows, {si} apart and each {taps}, leave gaps"
        if span % si == 0:  # whole: only the gaps to explain
            notes.append(f"{_prefix(names, axes)}{gaps} (of {ni}): {why}, so those values never reach the output")
            continue
        what = f"the last {unread} {_unit(names, unread)} of the {'padded ' if padded else ''}input"
        verb = "is" if unread == 1 else "are"
        if real == 0:
            detail = f"{'it is' if unread == 1 else 'they are'} padding"
            detail += f"; but {gaps} either: {why}" if inside else ", so no input value is lost"
        else:
            detail = (
                f"{'it holds' if unread == 1 else 'they hold'} input values that never reach the output"
                if real == unread
                else f"{unread - real} of padding and {real} input {_unit(names, real)} whose values never reach "
                "the output"
            )
            detail += f"; and {gaps} either: {why}" if inside else ""
        notes.append(
            f"{_prefix(names, axes)}{span}/{si} = {_ratio(span, si)} is not whole, so the size is floored "
            f"({span // si + 1}, not {_ratio(span + si, si)}); {what} {verb} never read by any window: {detail}"
        )
    return notes


def same_notes(
    axes: Sequence[str], n: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int],
    *, pooling: bool = False,
) -> list[str]:
    """The rule behind ``p=same``: the output is ``ceil(n/s)`` and the padding follows from it.

    This is TensorFlow/Keras 'same' at any stride (PyTorch's ``padding='same'`` is the same rule, for
    stride 1 only); some texts write ``floor(n/s)``, which differs when s does not divide n.

    >>> same_notes(("L",), (7,), (3,), (2,), (1,))[0].split(" (")[0]
    'p=same: out = ceil(n/s) = ceil(7/2) = 4'
    """
    keys: list[tuple[int, ...] | None] = []
    for ni, ki, si, di in zip(n, k, s, d):
        left, right = same_padding(ni, ki, si, di)[0]
        kei = effective_kernel(ki, di)[0]
        # at stride 1 the padding does not depend on n, so axes of different sizes share one note
        keys.append((0 if si == 1 else ni, kei, si, left, right))
    notes = []
    for names, (ni, kei, si, left, right) in _grouped(axes, keys):
        before, after = _sides(names)
        split = f"{left} {before} and {right} {after}"
        if left != right:
            who = "TensorFlow does" if pooling else "TensorFlow and PyTorch do"
            split += f" (the extra one on the {after}, as {who})"
        if si == 1:
            torch_same = "PyTorch's pooling has no padding='same'" if pooling else "PyTorch's padding='same'"
            notes.append(
                f"{_prefix(names, axes)}p=same at stride 1 keeps the size (TensorFlow/Keras 'same'; {torch_same}): "
                f"padding = k_eff - 1 = {kei - 1} in all: {split}"
            )
            continue
        out = ceil_div(ni, si)
        ceil_text = "" if ni % si == 0 else f"; this is ceil, not the floor({ni}/{si}) = {ni // si} some texts give"
        torch_same = (
            "PyTorch's pooling has no padding='same'" if pooling else "PyTorch's padding='same' allows stride 1 only"
        )
        notes.append(
            f"{_prefix(names, axes)}p=same: out = ceil(n/s) = ceil({ni}/{si}) = {out} (TensorFlow/Keras "
            f"'same'; {torch_same}){ceil_text}. Padding = max((out-1)*s + "
            f"k_eff - n, 0) = max(({out}-1)*{si} + {kei} - {ni}, 0) = {left + right} in all: {split}"
        )
    return notes


def dilation_note(k: Sequence[int], d: Sequence[int]) -> str:
    """``"dilation 2: a 3x3 kernel covers 5x5 ..."``, or ``""`` without dilation.

    PyTorch's ``dilation=1`` is a plain convolution with no gaps; texts that count the gaps between
    taps call PyTorch's dilation 2 "dilation 1".

    >>> dilation_note((3, 3), (2, 2)).split(" (")[0]
    'dilation 2: a 3x3 kernel covers 5x5'
    """
    if all(di == 1 for di in d):
        return ""
    ke = effective_kernel(tuple(k), tuple(d))

    def text(values: Sequence[int]) -> str:
        return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))

    same = len(set(zip(k, d))) == 1
    formula = f"{k[0]} + ({k[0]}-1)*({d[0]}-1) = {ke[0]}" if same else "per axis"
    gaps = text([di - 1 for di in d])
    skipped = f"{gaps} position{'' if gaps == '1' else 's'}" if "x" not in gaps else f"{gaps} positions"
    gap_text = f"taps {text(list(d))} apart ({skipped} skipped between neighbours)"
    if len(k) == 1:
        covers = f"a {k[0]}-tap kernel spans {ke[0]} positions"
    else:
        covers = f"a {'x'.join(map(str, k))} kernel covers {'x'.join(map(str, ke))}"
    return (
        f"dilation {text(d)}: {covers} (k_eff = k + (k-1)(d-1), {formula}), with "
        f"{gap_text}. PyTorch's dilation=1 means no gaps; texts that count the gaps call "
        f"this dilation {gaps}"
    )
