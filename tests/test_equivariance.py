"""Equivariance, measured: translations for convolutions, 90-degree rotations for the P4 network.

* A stack of unpadded stride-1 convolutions is *exactly* translation-equivariant: shifting the input
  by whole pixels shifts every feature map by the same pixels, wherever the window does not reach the
  image border (with padding the border rows see zeros instead of image and differ: shown too).
* ``p4cnn`` gives the same class scores for an image and its 90/180/270-degree rotations (to 1e-5 in
  float32); its plain twin ``p4cnn_plain`` (same parameter count, ordinary convolutions) does not.
* The traps: a stride-2 pooling is equivariant only to shifts by multiples of 2 (a 1-pixel shift
  moves the pooling grid), and a 2x2 pooling on an odd size silently drops the last row and column,
  so rotating the input no longer rotates the output. ``p4cnn`` loses its exact invariance on a
  27x27 input for that reason alone. The tests below assert these failures on purpose.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.layers import Conv2d
from cnnlab.models import create_model

SHIFTS = [(1, 0), (0, 3), (2, -1), (-3, -2)]


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate the content of ``x`` by (dy, dx) whole pixels (circularly; the wrapped part is discarded)."""
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def overlap(
    moved: torch.Tensor, ref: torch.Tensor, dy: int, dx: int, margin: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions where ``moved[i, j]`` should equal ``ref[i - dy, j - dx]``, ``margin`` away from the border.

    The output grid of a window that neither wraps around nor reaches the border: rows
    ``[max(dy, 0) + margin, H + min(dy, 0) - margin)`` of ``moved`` against the same rows minus ``dy``.
    """
    h, w = moved.shape[-2:]
    r0, r1 = max(dy, 0) + margin, h + min(dy, 0) - margin
    c0, c1 = max(dx, 0) + margin, w + min(dx, 0) - margin
    assert r1 - r0 >= 4 and c1 - c0 >= 4, "test input too small to have an interior"
    return moved[..., r0:r1, c0:c1], ref[..., r0 - dy : r1 - dy, c0 - dx : c1 - dx]


def conv_stack(padded: bool) -> nn.Module:
    """Three stride-1 convolutions (the middle one dilated) with ReLUs: receptive field 3 + 4 + 4 = 11.

    ``padded=True`` pads every layer with zeros so the maps keep their size; otherwise no padding.
    """
    torch.manual_seed(0)
    p1, p2 = (1, 2) if padded else (0, 0)
    return nn.Sequential(
        Conv2d(2, 6, 3, padding=p1),
        nn.ReLU(),
        Conv2d(6, 6, 3, padding=p2, dilation=2),
        nn.ReLU(),
        Conv2d(6, 3, 5, padding=p2),
    ).double()


@pytest.mark.parametrize(("dy", "dx"), SHIFTS)
def test_padding_free_conv_stack_is_translation_equivariant(dy: int, dx: int) -> None:
    f = conv_stack(padded=False)
    x = torch.randn(2, 2, 24, 26, dtype=torch.float64)
    y = f(x)  # (2, 3, 14, 16): each output sees an 11x11 window, none of it padding
    moved, expected = overlap(f(shift(x, dy, dx)), y, dy, dx)
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-12)


def test_padded_conv_stack_is_equivariant_only_away_from_the_border() -> None:
    """Two crops of one scene, offset by (dy, dx): same features in the interior, not at the border."""
    f = conv_stack(padded=True)  # 'same'-sized maps: every layer pads with zeros
    scene = torch.randn(1, 2, 30, 30, dtype=torch.float64)
    dy, dx = 3, 2
    x, x_moved = scene[..., :24, :24], scene[..., dy : dy + 24, dx : dx + 24]  # x_moved[i] = x[i + d]
    y, y_moved = f(x), f(x_moved)
    radius = 5  # half the 11-pixel receptive field: farther in, no window reaches the padding
    inner = (slice(radius, 24 - dy - radius), slice(radius, 24 - dx - radius))
    inner_shifted = (slice(radius + dy, 24 - radius), slice(radius + dx, 24 - radius))
    torch.testing.assert_close(y_moved[..., inner[0], inner[1]], y[..., inner_shifted[0], inner_shifted[1]])
    # the first row of y_moved reads zero padding where y reads the scene's pixels: they differ
    assert (y_moved[..., 0, : 24 - dx] - y[..., dy, dx:]).abs().max() > 1e-3


def test_stride2_pooling_breaks_translation_equivariance_for_odd_shifts() -> None:
    """THE TRAP: a stride-2 pool is equivariant to 2-pixel shifts only. A 1-pixel shift of the input
    is not any whole-pixel shift of the pooled map (the pooling grid moved by half a cell), so the
    features of a CNN with strided pooling change with sub-stride translations (aliasing)."""
    f = nn.Sequential(conv_stack(padded=False), nn.MaxPool2d(2)).requires_grad_(False)
    x = torch.randn(1, 2, 28, 28, dtype=torch.float64)
    y = f(x)  # (1, 3, 9, 9)
    moved, expected = overlap(f(shift(x, 2, 2)), y, 1, 1)  # 2 input pixels = 1 pooled pixel: exact
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-12)
    moved_by_one = f(shift(x, 1, 0))
    errors = []
    for ty in (-1, 0, 1):  # no whole-pixel shift of the pooled map explains a 1-pixel input shift
        a, b = overlap(moved_by_one, y, ty, 0)
        errors.append(float((a - b).abs().max()))
    assert min(errors) > 1e-2, f"expected strided pooling to break equivariance, got errors {errors}"


@pytest.fixture(scope="module")
def twins() -> dict[str, nn.Module]:
    """p4cnn and its plain twin with non-trivial BN running statistics, in eval mode."""
    torch.manual_seed(0)
    models = {}
    for name in ("p4cnn", "p4cnn_plain"):
        model = create_model(name)
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(8, 1, 28, 28) * 2 + 0.5)  # move the running statistics off (0, 1)
        models[name] = model.eval()
    return models


def rotation_gap(model: nn.Module, x: torch.Tensor) -> float:
    """Largest change of the outputs over the three 90-degree rotations of the input."""
    with torch.no_grad():
        y = model(x)
        return max(float((model(torch.rot90(x, k, dims=(-2, -1))) - y).abs().max()) for k in (1, 2, 3))


def test_p4_network_is_rotation_invariant_and_plain_twin_is_not(twins: dict[str, nn.Module]) -> None:
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in twins.items()}
    assert abs(params["p4cnn"] - params["p4cnn_plain"]) <= 0.1 * params["p4cnn"]  # matched within 10%
    torch.manual_seed(1)
    x = torch.randn(4, 1, 28, 28)
    assert rotation_gap(twins["p4cnn"], x) < 1e-5
    # same size, same parameter budget, same training state: the plain network changes its scores
    assert rotation_gap(twins["p4cnn_plain"], x) > 1e-4
    # the intermediate features of p4cnn rotate with the input (rotation pooling makes them plain maps)
    p4 = twins["p4cnn"]
    with torch.no_grad():
        feats = p4.forward_features(x)  # type: ignore[operator]
        rotated = p4.forward_features(torch.rot90(x, 1, dims=(-2, -1)))  # type: ignore[operator]
    torch.testing.assert_close(rotated, torch.rot90(feats, 1, dims=(-2, -1)), atol=1e-5, rtol=1e-5)


def test_p4_network_is_invariant_in_training_mode_too(twins: dict[str, nn.Module]) -> None:
    """Orientation-shared batch norm: rotating the whole batch leaves the batch statistics unchanged."""
    model = twins["p4cnn"]
    torch.manual_seed(2)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.double().train()
    try:
        with torch.no_grad():
            gap = float((model(torch.rot90(x, 1, dims=(-2, -1))) - model(x)).abs().max())
    finally:
        model.float().eval()
        model.load_state_dict(state)  # undo the running-statistics updates
    assert gap < 1e-10


def test_odd_input_size_breaks_the_p4_invariance(twins: dict[str, nn.Module]) -> None:
    """THE TRAP, for rotations: on 27x27 the first 2x2 pooling keeps rows/columns 0..25 and drops 26.
    Rotating the image moves the dropped column to the top row, which is kept: the network sees
    different pixels and its exact invariance is gone (even though every layer is equivariant)."""
    torch.manual_seed(3)
    x_even, x_odd = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 27, 27)
    assert rotation_gap(twins["p4cnn"], x_even) < 1e-5
    assert rotation_gap(twins["p4cnn"], x_odd) > 1e-4
    # the same trap in one layer: 2x2 max pooling commutes with rot90 on 8x8, not on 7x7
    pool = nn.MaxPool2d(2)
    for n, commutes in ((8, True), (7, False)):
        img = torch.randn(1, 1, n, n)
        same = torch.equal(pool(torch.rot90(img, 1, (-2, -1))), torch.rot90(pool(img), 1, (-2, -1)))
        assert same is commutes, n
