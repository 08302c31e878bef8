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
