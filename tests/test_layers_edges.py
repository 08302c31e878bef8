"""EdgeFilter2d: the seeds' kernels, frozen weights, and responses where the edges are."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.layers import EDGE_KERNELS, EdgeFilter2d

SEED_VERTICAL = [[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, -1.0]]  # seed 001, "Vertical Edge Detection"
SEED_HORIZONTAL = [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]
SEED_SOBEL = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
SEED_SCHARR = [[3.0, 0.0, -3.0], [10.0, 0.0, -10.0], [3.0, 0.0, -3.0]]


def test_kernels_are_the_seeds() -> None:
    assert [list(r) for r in EDGE_KERNELS["vertical"]] == SEED_VERTICAL
    assert [list(r) for r in EDGE_KERNELS["horizontal"]] == SEED_HORIZONTAL
    assert [list(r) for r in EDGE_KERNELS["sobel_x"]] == SEED_SOBEL
    assert [list(r) for r in EDGE_KERNELS["scharr_x"]] == SEED_SCHARR
    for name in ("sobel", "scharr", "prewitt"):  # y kernels are the transposes of the x kernels
        x, y = torch.tensor(EDGE_KERNELS[f"{name}_x"]), torch.tensor(EDGE_KERNELS[f"{name}_y"])
        assert torch.equal(y, x.T)


@pytest.mark.parametrize("kind", list(EDGE_KERNELS))
def test_every_kernel_ignores_flat_regions(kind: str) -> None:
    """Edge kernels sum to zero: a constant image gives zero response everywhere."""
    out = EdgeFilter2d(kind)(torch.full((1, 1, 6, 6), 7.0))
    assert out.shape == (1, 1, 4, 4)
    assert out.abs().max().item() == 0.0


@pytest.mark.parametrize("step_col", [3, 5, 8])
def test_vertical_kernel_peaks_at_the_step_column(step_col: int) -> None:
    """Bright left of column ``step_col``, dark from it on: |response| is largest where the step is."""
    image = torch.zeros(1, 1, 10, 12)
    image[..., :step_col] = 10.0
    out = EdgeFilter2d("vertical", padding=1, padding_mode="replicate")(image)[0, 0]
    column_strength = out.abs().sum(dim=0)  # (W,)
    peak = int(column_strength.argmax())
    assert peak in (step_col - 1, step_col)  # the two columns whose 3x3 window straddles the step
    assert column_strength[step_col - 1] == column_strength[step_col]  # symmetric about the step
    assert (out[:, step_col - 1] > 0).all()  # bright-to-dark (left to right) is positive, as the seed says
    far = [c for c in range(12) if c not in (step_col - 1, step_col)]
    assert column_strength[far].abs().max() == 0
    # the horizontal kernel sees no edge in this image
    assert EdgeFilter2d("horizontal", padding=1, padding_mode="replicate")(image).abs().max() == 0


def test_horizontal_and_sobel_y_peak_at_the_step_row() -> None:
    image = torch.zeros(1, 1, 9, 9)
    image[..., :4, :] = 1.0
    for kind in ("horizontal", "sobel_y", "scharr_y", "prewitt_y"):
        out = EdgeFilter2d(kind, padding=1, padding_mode="replicate")(image)[0, 0]
        assert int(out.abs().sum(dim=1).argmax()) in (3, 4), kind
        assert (out[3] > 0).all(), kind  # bright above dark is positive


def test_matches_conv2d_with_the_kernel() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    layer = EdgeFilter2d(["sobel_x", "laplacian"], in_channels=3)
    out = layer(x)
    assert out.shape == (2, 6, 6, 6)
    for c in range(3):
        for j, kind in enumerate(["sobel_x", "laplacian"]):
            weight = torch.tensor(EDGE_KERNELS[kind]).view(1, 1, 3, 3)
            torch.testing.assert_close(out[:, 2 * c + j : 2 * c + j + 1], F.conv2d(x[:, c : c + 1], weight))


def test_weights_are_frozen_but_saved() -> None:
    layer = EdgeFilter2d("sobel_x", in_channels=2)
    assert [p.requires_grad for p in layer.parameters()] == [False]
    assert list(layer.state_dict()) == ["weight"]
    other = EdgeFilter2d("sobel_x", in_channels=2)
    other.load_state_dict(layer.state_dict())
    layer.reset_parameters()  # re-initialising writes the kernels again, never random values
    assert torch.equal(layer.weight, other.weight)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad is None and x.grad is not None


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"kind must be one of vertical, horizontal.*received kind='roberts'"):
        EdgeFilter2d("roberts")
    with pytest.raises(ValueError, match=r"in_channels must be a positive int.*received in_channels=0"):
        EdgeFilter2d("sobel_x", in_channels=0)
