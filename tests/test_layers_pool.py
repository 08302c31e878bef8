"""SumPool2d against average pooling, MaxPool2dIndices against nn.MaxPool2d, and max unpooling."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.layers import MaxPool2dIndices, MaxUnpool2d, SumPool2d


@pytest.mark.parametrize(("k", "s", "p"), [(2, None, 0), (3, 2, 1), (3, 1, 0), (2, 1, 1), ((2, 3), (1, 2), (1, 1))])
def test_sum_pool_is_avg_pool_times_window_area(k: Any, s: Any, p: Any) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8)
    area = k * k if isinstance(k, int) else k[0] * k[1]
    expected = F.avg_pool2d(x, k, s, p, count_include_pad=True) * area  # padding counts as zeros
    out = SumPool2d(k, s, p)(x)
    torch.testing.assert_close(out, expected)
    ref = nn.AvgPool2d(k, s, p)
    assert out.shape == ref(x).shape


def test_sum_pool_values_and_ceil_mode() -> None:
    x = torch.ones(1, 1, 5, 5)
    assert SumPool2d(2)(x).flatten().tolist() == [4.0] * 4
    # ceil_mode: the last window hangs over the edge and sums only the 2 x 1 ones it covers
    out = SumPool2d(2, ceil_mode=True)(x)[0, 0]
    assert out.tolist() == [[4.0, 4.0, 2.0], [4.0, 4.0, 2.0], [2.0, 2.0, 1.0]]
    # padding 1 with a 3x3 window: the corner window covers 2 x 2 ones and 5 padding zeros
    assert SumPool2d(3, 1, 1)(x)[0, 0, 0, 0].item() == 4.0


def test_sum_pool_gradient_is_window_count() -> None:
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    SumPool2d(2, 1)(x).sum().backward()
    assert x.grad is not None
    # each input pixel is in (number of 2x2 windows covering it) windows: corners 1, edges 2, inside 4
    assert x.grad[0, 0].tolist() == [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]


@pytest.mark.parametrize("shape", [(8, 8), (7, 7), (7, 10), (5, 9)])
@pytest.mark.parametrize(("k", "s", "p"), [(2, None, 0), (3, 2, 1), (2, 1, 0)])
def test_max_pool_indices_match_torch_and_unpool_restores(shape: tuple[int, int], k: Any, s: Any, p: Any) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, *shape)
    pool = MaxPool2dIndices(k, s, p)
    y, idx = pool(x)
    ref_y, ref_idx = nn.MaxPool2d(k, s, p, return_indices=True)(x)
    torch.testing.assert_close(y, ref_y)
    assert torch.equal(idx, ref_idx)

    restored = MaxUnpool2d.like(pool)(y, idx, x.shape)
    assert restored.shape == x.shape  # odd sizes too: output_size travels with the indices
    flat_x, flat_r = x.flatten(2), restored.flatten(2)
    kept = torch.zeros_like(flat_x, dtype=torch.bool).scatter_(2, idx.flatten(2), True)
    # the pooled positions hold the input's value there, every other position is zero
    torch.testing.assert_close(flat_r[kept], flat_x[kept])
    assert (flat_r[~kept] == 0).all()
    assert torch.equal(torch.gather(flat_r, 2, idx.flatten(2)), y.flatten(2))


def test_unpool_without_output_size_is_wrong_for_odd_inputs() -> None:
    """The trap the output_size argument avoids: 7x7 pools to 3x3, which unpools to 6x6 by default."""
    x = torch.randn(1, 1, 7, 7)
    y, idx = MaxPool2dIndices(2)(x)
    assert MaxUnpool2d(2)(y, idx).shape[-2:] == (6, 6)
    assert MaxUnpool2d(2)(y, idx, (7, 7)).shape[-2:] == (7, 7)
    assert MaxUnpool2d(2)(y, idx, torch.Size([1, 1, 7, 7])).shape[-2:] == (7, 7)


def test_unpool_gradient_flows_to_pooled_values() -> None:
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    y, idx = MaxPool2dIndices(2)(x)
    y = y.detach().requires_grad_(True)
    unpool = MaxUnpool2d(2)
    assert torch.autograd.gradcheck(lambda v: unpool(v, idx, x.shape), (y,))


def test_unpool_errors() -> None:
    x = torch.randn(1, 1, 7, 7)
    y, idx = MaxPool2dIndices(2)(x)
    with pytest.raises(ValueError, match=r"output_size must be the size that was pooled.*\(9, 9\).*\(3, 3\)"):
        MaxUnpool2d(2)(y, idx, (9, 9))
    with pytest.raises(ValueError, match=r"indices must have the shape of the pooled values"):
        MaxUnpool2d(2)(y, idx[..., :2])
    with pytest.raises(ValueError, match=r"output_size must be \(H, W\) or a full"):
        MaxUnpool2d(2)(y, idx, (7,))
    with pytest.raises(ValueError, match=r"output_size must be \(H, W\) or .* of ints; received output_size='4,4'"):
        MaxUnpool2d(2)(y, idx, "4,4")  # was int() of ','


def test_unpool_refuses_a_size_that_pools_alike_but_misreads_the_indices() -> None:
    """7x7 and 6x6 both pool to 3x3; indices from the 7x7 map read with width 6 scattered to wrong places."""
    x = torch.zeros(1, 1, 7, 7)
    for i in range(0, 6, 2):
        for j in range(0, 6, 2):
            x[0, 0, i, j] = 1 + i * 7 + j
    y, idx = MaxPool2dIndices(2)(x)
    with pytest.raises(
        ValueError,
        match=r"output_size must be the size of the map that was pooled, because the indices are flat positions "
        r".*received output_size=\(6, 6\), but index 14 .*wrong places\. .*output_size=x\.shape\[-2:\]",
    ):
        MaxUnpool2d(2)(y, idx, (6, 6))
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 5, 5] = 1.0  # index 40 >= 6 * 6: was torch's raw 'Found an invalid max index'
    y, idx = MaxPool2dIndices(2)(x)
    with pytest.raises(ValueError, match=r"received output_size=\(6, 6\), but index \d+ at"):
        MaxUnpool2d(2)(y, idx, (6, 6))
    assert MaxUnpool2d(2)(y, idx, x.shape[-2:])[0, 0, 5, 5] == 1.0


@pytest.mark.parametrize(
    ("k", "s", "p", "shape"), [(2, 2, 0, (7, 7)), (3, 2, 1, (8, 9)), (2, 2, 0, (9, 6)), (3, 3, 1, (10, 8))]
)
def test_unpool_every_other_size_is_refused_or_places_values_where_pooled(
    k: int, s: int, p: int, shape: tuple[int, int]
) -> None:
    """With at least two rows of windows the check is exact on placement: any other accepted size puts every
    value at its true (row, column) and differs only by trailing rows/columns that hold no maximum."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, *shape)
    pool = MaxPool2dIndices(k, s, p)
    y, idx = pool(x)
    unpool = MaxUnpool2d.like(pool)
    truth = unpool(y, idx, shape)
    for dh in range(-2, 3):
        for dw in range(-2, 3):
            size = (shape[0] + dh, shape[1] + dw)
            try:
                out = unpool(y, idx, size)
            except ValueError:
                continue
            h, w = min(shape[0], size[0]), min(shape[1], size[1])
            assert torch.equal(out[..., :h, :w], truth[..., :h, :w]), size
            assert out.count_nonzero() == truth.count_nonzero(), size


def test_like_refuses_a_dilated_pool_instead_of_dropping_the_dilation() -> None:
    """like() copied kernel, stride and padding only; unpooling a dilated pool's output with x.shape then
    failed with 'an input of (8, 8) pools to (4, 4)', blaming the size the user passed correctly."""
    pool = nn.MaxPool2d(2, 2, dilation=2, return_indices=True)
    with pytest.raises(ValueError, match=r"MaxUnpool2d\.like: max unpooling \(nn\.MaxUnpool2d\) has no dilation, "
                                         r"so it cannot invert a dilated pool; received a pool with dilation=2\. "
                                         r"Pool with dilation=1"):  # fmt: skip
        MaxUnpool2d.like(pool)
    assert MaxUnpool2d.like(nn.MaxPool2d(3, 2, 1, dilation=1)).kernel_size == (3, 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SumPool2d(0), r"^SumPool2d: kernel_size must be positive on every axis; received kernel_size=0 along"),
        (lambda: MaxPool2dIndices(2, stride=(1, 0)), r"^MaxPool2dIndices: stride must be positive .* stride=0 along W"),
        (lambda: SumPool2d(2, padding=-1), r"padding must be >= 0 .* \(negative padding is not supported, as in "
                                           r"PyTorch\)\. Use padding=0 or more\.$"),
    ],
)
def test_pool_windows_are_checked_when_built(make: Any, message: str) -> None:
    # they built and failed at the first forward with torch's bare "kernel size should be greater than zero"
    with pytest.raises(ValueError, match=message):
        make()
