"""Receptive fields across a ``cat`` along a spatial axis: a later window that straddles the seam sees both pieces.

Reference: autograd (float64, positive weights): the gradient of one output unit with respect to each
piece of the cat is non-zero exactly on the piece units that reach it. Each piece unit sees its textbook
span (its crop's offset, then the piece's layers on the infinite grid: padding positions are grid
positions, as everywhere in cnnlab). Per axis, a unit sees the hull of the spans it reaches; ``size`` is
the widest over all units, ``size_min`` the path through one piece alone (the narrowest piece's widest).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
import torch
import torch.nn as nn

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze

Crop = tuple[int, int, int, int]  # rows h0:h1, columns w0:w1 of the input
Piece = tuple[Crop, nn.Module]  # a crop of the input and the layers applied to it
Join = Callable[..., torch.Tensor]  # torch.cat and its aliases
Fields = tuple[tuple[int, int], tuple[int, int]]  # (H, W) sizes: largest over units, path through one piece


class _Seam(nn.Module):
    """``join([branch(x[..., h0:h1, w0:w1]) for each piece], dim)``, then ``post``."""

    def __init__(self, pieces: Sequence[Piece], dim: int, post: Sequence[nn.Module], join: Join = torch.cat) -> None:
        super().__init__()
        self.crops = [crop for crop, _ in pieces]
        self.branches = nn.ModuleList([branch for _, branch in pieces])
        self.dim, self.join = dim, join
        self.post = nn.Sequential(*post)

    def pieces(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [branch(x[:, :, h0:h1, w0:w1]) for (h0, h1, w0, w1), branch in zip(self.crops, self.branches)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.post(self.join(self.pieces(x), self.dim))
        return out


def _conv(
    k: int | tuple[int, int], s: int | tuple[int, int] = 1, p: int | tuple[int, int] = 0, d: int | tuple[int, int] = 1
) -> nn.Conv2d:
    return nn.Conv2d(2, 2, k, stride=s, padding=p, dilation=d)


def _taps(m: nn.Module, axis: int) -> tuple[int, int, int, int]:
    """(kernel, stride, padding, dilation) of a conv or pooling layer along axis 0 (H) or 1 (W)."""

    def along(v: object) -> int:
        return int(v[axis] if isinstance(v, tuple) else v)  # type: ignore[arg-type]

    return along(m.kernel_size), along(m.stride), along(m.padding), along(getattr(m, "dilation", 1))


def _textbook(crop: Crop, branch: nn.Module, axis: int, u: int) -> tuple[int, int]:
    """Input pixels unit ``u`` of a piece sees along ``axis`` on the infinite grid."""
    first = last = u
    for m in reversed(list(branch.modules())[1:] if isinstance(branch, nn.Sequential) else [branch]):
        k, s, p, d = _taps(m, axis)
        first, last = first * s - p, last * s - p + (k - 1) * d
    offset = crop[2 * axis]
    return offset + first, offset + last


_M = TypeVar("_M", bound=nn.Module)


def _positive(model: _M) -> _M:
    model = model.double().eval()
    positive(model)
    return model


def measured(model: _Seam, shape: tuple[int, ...], depth: int) -> tuple[Fields, float]:
    """Largest and one-piece sizes after ``depth`` post layers, and the centre of the first unit's W hull."""
    x = torch.rand(1, *shape, dtype=torch.double) + 0.5
    pieces = [p.detach().requires_grad_(True) for p in model.pieces(x)]
    y = model.post[:depth](model.join(pieces, model.dim))
    grads = torch.autograd.grad(  # one backward per output unit, batched: (units, *piece shape) per piece
        y.sum(1).flatten(1)[0],
        pieces,
        torch.eye(y.shape[-2] * y.shape[-1], dtype=torch.double),
        is_grads_batched=True,
    )
    hi, per_piece = [0, 0], [[0, 0] for _ in pieces]
    reached_any = [False] * len(pieces)
    first_centre = 0.0
    for unit in range(y.shape[-2] * y.shape[-1]):
        hulls: list[list[tuple[int, int]]] = [[], []]
        for k, (g, crop, branch) in enumerate(zip(grads, model.crops, model.branches)):
            seen = g[unit, 0].abs().sum(0) > 0  # (h, w) of piece k that reach the unit
            if not seen.any():
                continue
            reached_any[k] = True
            for axis, hit in enumerate((seen.any(1), seen.any(0))):
                units = hit.nonzero().flatten()
                first, last = (
                    _textbook(crop, branch, axis, int(units[0])),
                    _textbook(crop, branch, axis, int(units[-1])),
                )
                hulls[axis].append((first[0], last[1]))
                per_piece[k][axis] = max(per_piece[k][axis], last[1] - first[0] + 1)
        if not hulls[0]:
            continue  # a unit that reads padding alone sees no pixel
        for axis in (0, 1):
            lo, up = min(h[0] for h in hulls[axis]), max(h[1] for h in hulls[axis])
            hi[axis] = max(hi[axis], up - lo + 1)
            if unit == 0 and axis == 1:
                first_centre = (lo + up) / 2
    narrow = [min(p[axis] for p, r in zip(per_piece, reached_any) if r) for axis in (0, 1)]
    return ((hi[0], hi[1]), (narrow[0], narrow[1])), first_centre


def analysed(model: _Seam, shape: tuple[int, ...]) -> list[Fields]:
    """(size, size_min) of the cat row and of every post layer."""
    report = analyze(model, shape)
    joined = next(i for i, r in enumerate(report.layers) if r.type in ("cat", "concat", "concatenate"))
    out = []
    for row in report.layers[joined : joined + len(model.post) + 1]:
        assert row.rf is not None and row.rf_min is not None, row.name
        out.append(((row.rf.size[0], row.rf.size[1]), (row.rf_min[0], row.rf_min[1])))
    return out


def check(pieces: Sequence[Piece], dim: int, post: Sequence[nn.Module], shape: tuple[int, ...]) -> list[Fields]:
    model = _positive(_Seam(pieces, dim, post))
    got = analysed(model, shape)
    want = [measured(model, shape, depth)[0] for depth in range(len(post) + 1)]
    assert got == want
    return got


H, W = 8, 32
FULL: Crop = (0, H, 0, W)


def _two_branches() -> list[Piece]:
    return [(FULL, _conv(3, p=1)), (FULL, _conv(5, p=2))]


def test_halves_of_one_branch_see_across_the_seam() -> None:
    # unpadded 3x3 on each half: the seam skips two columns, so a 3x3 window on it sees 7 columns (every
    # window after a spatial cat was 'rf unknown')
    branch = _conv(3)
    sizes = check([((0, H, 0, 16), branch), ((0, H, 16, W), branch)], -1, [_conv(3)], (2, H, W))
    assert sizes[-1] == ((5, 7), (5, 5))


def test_strided_halves_of_uneven_width() -> None:
    branch = _conv(3, s=2, p=1)
    check([((0, H, 0, 15), branch), ((0, H, 15, W), branch)], 3, [_conv(3, p=1), _conv(3, p=1)], (2, H, W))


@pytest.mark.parametrize("dim", [3, -1])
def test_branches_of_3x3_and_5x5_joined_along_w(dim: int) -> None:
    # the window on the seam reads the 3x3 branch's last column and the 5x5 branch's first: the whole width
    sizes = check(_two_branches(), dim, [_conv(3, p=1), _conv(1)], (2, H, W))
    assert sizes == [((5, 5), (3, 3)), ((7, 35), (5, 5)), ((7, 35), (5, 5))]


@pytest.mark.parametrize("dim", [2, -2])
def test_branches_joined_along_h(dim: int) -> None:
    sizes = check([((0, W, 0, H), _conv(3, p=1)), ((0, W, 0, H), _conv(5, p=2))], dim, [_conv(3, p=1)], (2, W, H))
    assert sizes[-1] == ((35, 7), (5, 5))


def test_unequal_pieces() -> None:
    pieces = [((0, H, 0, 10), _conv(3, p=1)), ((0, H, 10, W), _conv((5, 3), p=(2, 0), d=(1, 2)))]
    check(pieces, -1, [_conv(3, p=1), _conv(2, s=2)], (2, H, W))


def test_strided_conv_after_the_seam() -> None:
    check(_two_branches(), -1, [_conv(3, s=2, p=1), _conv(3, s=2)], (2, H, W))


@pytest.mark.parametrize("before", [0, 1])
def test_global_pooling_after_the_seam_sees_both_pieces(before: int) -> None:
    post = [*[_conv(3, p=1)][:before], nn.AdaptiveAvgPool2d(1), _conv(1)]
    model = _positive(_Seam(_two_branches(), -1, post))
    sizes = analysed(model, (2, H, W))
    assert sizes == [measured(model, (2, H, W), d)[0] for d in range(len(post) + 1)]
    assert sizes[-1] == ((H + 4, W + 4), (H + 2, W + 2))  # all of both pieces; all of the 3x3 piece alone
    # the one unit left is centred on the middle of everything it sees, as global pooling on one grid
    row = analyze(model, (2, H, W)).layers[-1]
    assert row.rf is not None and row.rf.start == ((H - 1) / 2, measured(model, (2, H, W), len(post))[1])


def test_start_and_jump_after_the_seam_follow_the_unit_centres() -> None:
    # as after an uneven adaptive pool: start = centre of unit 0, jump = mean spacing of the unit centres
    pieces = [((0, H, 0, 12), _conv(3, p=1)), ((0, H, 12, W), _conv(3, s=(1, 2), p=1))]  # centres 0..11, 12, 14, .., 30
    row = analyze(_Seam(pieces, -1, []), (2, H, W)).layers[-1]
    assert row.rf is not None and (row.rf.start, row.rf.jump) == ((0.0, 0.0), (1.0, 30 / 21))


@pytest.mark.parametrize("join", [torch.concat, torch.concatenate])
def test_concat_aliases(join: Join) -> None:
    model = _positive(_Seam(_two_branches(), -1, [_conv(3, p=1)], join))
    assert analysed(model, (2, H, W)) == [measured(model, (2, H, W), d)[0] for d in (0, 1)]


def test_rolled_halves() -> None:
    # x[..., 8:] before x[..., :8]: the seam joins the right border to the left one
    branch = _conv(3, p=1)
    check([((0, H, 8, 16), branch), ((0, H, 0, 8), branch)], -1, [_conv(3, p=1), nn.AvgPool2d(2)], (2, H, 16))


class _Mean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def test_mean_over_the_joined_map() -> None:
    # the mean read the first piece's 10 columns with the widest piece's size (5 + 9 = 14, not 35)
    pieces = [((0, H, 0, 10), _conv(3, p=1)), ((0, H, 10, W), _conv(5, p=2))]
    sizes = check(pieces, -1, [nn.ReLU(), _Mean()], (2, H, W))
    assert sizes[-1] == ((H + 4, W + 3), (H + 2, 12))


class _Residual(nn.Module):
    def __init__(self, k: int, d: int = 1) -> None:
        super().__init__()
        self.body = _conv(k, p=d * (k - 1) // 2, d=d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.body(x)
        return out


@pytest.mark.parametrize("halves", [True, False])
def test_residual_blocks_after_the_seam(halves: bool) -> None:
    # every add keeps what each unit sees through either input (the shortcut's pieces lie inside the body's)
    branch = _conv(3)
    pieces = [((0, H, 0, 16), branch), ((0, H, 16, W), branch)] if halves else _two_branches()
    post = [_Residual(3), _Residual(3, d=2), _conv(3, s=2, p=1), _Residual(3), nn.AdaptiveAvgPool2d((1, None))]
    model = _positive(_Seam(pieces, -1, post))
    report = analyze(model, (2, H, W))
    for depth, name in ((1, "post.0.add"), (2, "post.1.add"), (3, "post.2"), (4, "post.3.add"), (5, "post.4")):
        row = report.layer(name)
        assert row.rf is not None and row.rf.size == measured(model, (2, H, W), depth)[0][0], name


def _extent(fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]) -> tuple[int, int]:
    """Largest extent (H, W) of any output unit's input gradient (no padding reaches the input here)."""
    x = torch.rand(1, *shape, dtype=torch.double, requires_grad=True)
    return widest_reach(fn(x), x)


class _Merged(nn.Module):
    """``c(a + b(x))``: ``a`` runs backwards (rolled halves) or copies one unit (global pool, then 1 -> 7)."""

    def __init__(self, rolled: bool) -> None:
        super().__init__()
        self.rolled = rolled
        self.b, self.c = _conv((3, 1)), _conv(3, p=1)
        self.gap, self.up = nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d(7)

    def merged(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.cat([x[:, :, 1:-1, 8:], x[:, :, 1:-1, :8]], -1) if self.rolled else self.up(self.gap(x))
        out: torch.Tensor = a + self.b(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.c(self.merged(x))
        return out


@pytest.mark.parametrize(("rolled", "shape"), [(True, (2, 9, 16)), (False, (2, 9, 7))])
def test_merges_of_maps_whose_jump_is_not_positive(rolled: bool, shape: tuple[int, ...]) -> None:
    # the merge rebuilds the narrower size on the first input's jump (-1/15, 0), which has no infinite-grid
    # pattern: after 1 -> 7 analyze raised ValueError ('an RF needs jump > 0')
    model = _positive(_Merged(rolled))
    report = analyze(model, shape)
    for name, fn in (("add", model.merged), ("c", model)):
        row = report.layer(name)
        assert row.rf is not None and row.rf.size == _extent(fn, shape), name


def _random_piece(rng: random.Random) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(rng.randint(0, 2)):
        k = (rng.choice([1, 2, 3, 5]), rng.choice([1, 2, 3]))
        p = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
        layers.append(_conv(k, s=rng.choice([1, 1, 2]), p=p, d=rng.choice([1, 1, 2])))
    return nn.Sequential(*layers)


def _out(branch: nn.Module, n: int, axis: int) -> int:
    for m in branch.modules() if isinstance(branch, nn.Sequential) else [branch]:
        if isinstance(m, nn.Sequential):
            continue
        k, s, p, d = _taps(m, axis)
        n = (n + 2 * p - d * (k - 1) - 1) // s + 1
    return n


def _reads_the_map(n: int, k: int, s: int, p: int, d: int) -> bool:
    """Every unit of a window over ``n`` units reads at least one of them (not padding alone)."""
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    return out >= 1 and all(any(0 <= o * s - p + j * d < n for j in range(k)) for o in range(out))


@pytest.mark.parametrize("seed", range(40))
def test_random_chains(seed: int) -> None:
    rng = random.Random(seed)
    axis = rng.choice([0, 1])  # join along H or W
    size, other = rng.randint(12, 24), rng.randint(5, 9)
    while True:  # pieces that are at least one unit long and agree across the seam
        cuts = sorted(rng.sample(range(1, size), rng.randint(1, 2)))
        spans = list(zip([0, *cuts], [*cuts, size]))
        rng.shuffle(spans)
        crops: list[Crop] = [(a, b, 0, other) if axis == 0 else (0, other, a, b) for a, b in spans]
        pieces = [(crop, _random_piece(rng)) for crop in crops]
        across = {_out(br, other, 1 - axis) for _, br in pieces}
        along = [_out(br, b - a, axis) for (a, b), (_, br) in zip(spans, pieces)]
        if len(across) == 1 and min(across) >= 3 and min(along) >= 1:
            break
    post: list[nn.Module] = []
    n = [0, 0]
    n[axis], n[1 - axis] = sum(along), min(across)
    for _ in range(rng.randint(1, 3)):
        k, s, p, d = rng.choice([1, 2, 3]), rng.choice([1, 2]), rng.randint(0, 1), rng.choice([1, 2])
        if not all(_reads_the_map(m, k, s, p, d) for m in n):
            k, s, p, d = 1, 1, 0, 1  # a window that would read padding alone: a 1x1 conv instead
        post.append(_conv(k, s=s, p=p, d=d) if rng.random() < 0.8 else nn.AvgPool2d(k, s, p if 2 * p <= k else 0))
        n = [_out(post[-1], n[0], 0), _out(post[-1], n[1], 1)]
    if rng.random() < 0.3:
        post.append(nn.AdaptiveAvgPool2d(1))
    shape = (2, size, other) if axis == 0 else (2, other, size)
    check(pieces, 2 + axis, post, shape)


class _CoordinateAttention(nn.Module):
    """Coordinate Attention (Hou et al. 2021): the H-pooled map and the W-pooled one, permuted so W runs along
    H's tensor axis, are joined along that axis, mixed by a 1x1 conv, split and applied as two gates."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.stem, self.mix = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 1)
        self.gh, self.gw = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        h, w = x.shape[-2:]
        xh, xw = x.mean(3, keepdim=True), x.mean(2, keepdim=True).permute(0, 1, 3, 2)  # (h, 1), (w, 1)
        gh, gw = torch.split(self.mix(torch.cat([xh, xw], dim=2)), [h, w], dim=2)
        out: torch.Tensor = x * self.gh(gh).sigmoid() * self.gw(gw.permute(0, 1, 3, 2)).sigmoid()
        return out


def test_a_cat_of_different_spatial_axes_is_unknown_where_it_happens() -> None:
    # H units then W units along one tensor axis: the cat was followed as if both were H, and the next layer
    # (the 1x1 mix) was named as the one cnnlab could not follow
    report = analyze(_CoordinateAttention(), (3, 9, 11))
    unknown = [w for w in report.warnings if w.rule == "rf-unknown"]
    assert [w.layer for w in unknown] == ["cat"]
    assert "holds a different spatial axis" in unknown[0].message
    assert report.layer("stem").rf is not None and report.layer("cat").rf is None
