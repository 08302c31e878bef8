"""A ``cat`` along a spatial axis: the pieces' units side by side on one finite map, with seams between them.

The joined units no longer share one grid. A later window that straddles a seam reads the last units of
one piece and the first of the next, which may sit far apart in the image (two branches over the whole
image), skip columns (unpadded convolutions on each half) or run backwards (rolled halves). So from the
cat on every axis is followed on the finite map (:mod:`cnnlab.analysis.onmap`), and each piece stays a
part of its own: its units keep their exact spans, at the piece's offset along the joined axis and
unchanged along the others. A unit sees a piece where that piece reaches every one of its coordinates,
and along each axis the union of the spans of the pieces it sees (:func:`~cnnlab.analysis.onmap.widest_seen`).
``start`` and ``jump`` along the joined axis follow the unit centres as after an uneven adaptive pool:
the centre of unit 0 and the mean spacing of the centres from the first unit to the last (:func:`grid`).

>>> from cnnlab.analysis.onmap import widest_seen, window
>>> three = ((-1, 1), (0, 2), None, None)  # W: two units of a 3x3 branch, then two of a 5x5 branch
>>> five = (None, None, (-2, 2), (-1, 3))
>>> after = tuple(window(part, k=3, s=1, p_left=1, d=1, n_out=4) for part in (three, five))
>>> widest_seen([(((0, 0),),) * 2, after])  # (H, W): the window on the seam sees both branches
(1, 6)
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.analysis import onmap
from cnnlab.analysis.capture import Graph, Node
from cnnlab.analysis.onmap import Parts

CATS = ("cat", "concat", "concatenate")

# one piece's spans along every axis: (hi parts, lo parts) per axis
PieceSpans = Sequence[tuple[Parts, Parts]]


def cat_dim(node: Node) -> int | None:
    """The tensor axis a cat joins its inputs along (the one axis where their sizes add up), or None."""
    out, shapes = node.output_shape, node.input_shapes
    if node.type not in CATS or len(shapes) < 2 or any(len(shape) != len(out) for shape in shapes):
        return None
    differ = [d for d in range(len(out)) if any(shape[d] != out[d] for shape in shapes)]
    if len(differ) != 1 or sum(shape[differ[0]] for shape in shapes) != out[differ[0]]:
        return None
    return differ[0]


def operands(graph: Graph, node: Node) -> list[int | None]:
    """The node that produced each tensor input, in order and repeated (None: a constant no node produced)."""
    rows = []
    for t in node.tensor_inputs:
        found = [j for j in node.inputs if any(o is t for o in graph.nodes[j].outputs)]
        rows.append(max(found) if found else None)  # an in-place op returns its input: the latest wrote it
    return rows


def join_spans(pieces: Sequence[tuple[PieceSpans | None, int]], axis: int) -> tuple[tuple[Parts, Parts], ...]:
    """Per axis, the (hi, lo) parts of the joined map: ``pieces`` holds each piece's spans (None for a
    constant, which sees no pixel) and its length along ``axis``, where it sits after the ones before it."""
    n_out = sum(n for _, n in pieces)
    nd = len(next(spans for spans, _ in pieces if spans is not None))
    hi: list[list[onmap.Spans]] = [[] for _ in range(nd)]
    lo: list[list[onmap.Spans]] = [[] for _ in range(nd)]
    offset = 0
    for spans, n in pieces:
        for b, (hi_parts, lo_parts) in enumerate(spans or ()):
            if b == axis:  # unit u of the piece is unit offset + u of the joined axis
                hi_parts, lo_parts = (
                    tuple(onmap.move(sp, -offset, 1, n_out) for sp in p) for p in (hi_parts, lo_parts)
                )
            hi[b] += hi_parts
            lo[b] += lo_parts
        offset += n
    return tuple((tuple(h), tuple(low)) for h, low in zip(hi, lo))


def grid(pieces: Sequence[tuple[tuple[float, float] | None, int]]) -> tuple[float, float]:
    """``(start, jump)`` of a joined axis from each piece's ``(start, jump)`` (None: a constant) and length.

    The jump is the mean spacing of the unit centres from the first unit a piece fills to the last, the
    start the centre of unit 0 on that spacing, as after an uneven adaptive pool.

    >>> grid([((0.0, 1.0), 12), ((12.0, 2.0), 10)])  # centres 0, 1, .., 11, then 12, 14, .., 30
    (0.0, 1.4285714285714286)
    """
    ends: list[tuple[int, float]] = []  # (unit, centre) of each piece's first and last unit
    offset = 0
    for piece, n in pieces:
        if piece is not None and n:
            start, jump = piece
            ends += [(offset, start), (offset + n - 1, start + (n - 1) * jump)]
        offset += n
    (first, c_first), (last, c_last) = ends[0], ends[-1]
    jump = (c_last - c_first) / (last - first) if last > first else next(p[1] for p, _ in pieces if p is not None)
    return c_first - first * jump, jump
