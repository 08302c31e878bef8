"""The NumPy reference against PyTorch autograd (float64), forward and backward, over parametrized grids."""

from __future__ import annotations

import doctest
import importlib
import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.reference import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    linear_backward,
    linear_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    max_unpool2d_backward,
    max_unpool2d_forward,
    relu_backward,
    relu_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
    sum_pool2d_backward,
    sum_pool2d_forward,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def _torch_grads(
    fn: Callable[..., torch.Tensor], arrays: list[np.ndarray], dout_seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Run ``fn`` under autograd; return output, the upstream gradient used and the input gradients."""
    leaves = [_leaf(a) for a in arrays]
    out = fn(*leaves)
    dout = np.random.default_rng(dout_seed).standard_normal(tuple(out.shape))
    out.backward(torch.tensor(dout))
    assert all(leaf.grad is not None for leaf in leaves)
    return out.detach().numpy(), dout, [leaf.grad.numpy() for leaf in leaves]  # type: ignore[union-attr]


def _close(got: np.ndarray | None, want: np.ndarray) -> None:
    assert got is not None
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)


# ---- conv2d ---------------------------------------------------------------------------------------

CONV_GRID = list(
    itertools.product(
        [1, 2, 3],  # stride
        [0, 1, 2],  # padding
        [1, 2],  # dilation
        [1, 2],  # groups
        ["zeros", "reflect", "replicate"],
        [(7, 6), (8, 9)],  # odd / even input sizes
    )
)


@pytest.mark.parametrize(("s", "p", "d", "g", "mode", "size"), CONV_GRID)
def test_conv2d_matches_torch(s: int, p: int, d: int, g: int, mode: str, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(s * 100 + p * 10 + d)
    kernel = (3, 3) if size[0] % 2 else (2, 3)
    x = rng.standard_normal((2, 4, *size))
    w = rng.standard_normal((6, 4 // g, *kernel))
    b = rng.standard_normal(6)

    def torch_conv(xt: torch.Tensor, wt: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
        if mode == "zeros":
            return F.conv2d(xt, wt, bt, s, p, d, g)
        return F.conv2d(F.pad(xt, (p,) * 4, mode=mode), wt, bt, s, 0, d, g)

    want, dout, (dx_t, dw_t, db_t) = _torch_grads(torch_conv, [x, w, b])
    out, cache = conv2d_forward(x, w, b, stride=s, padding=p, dilation=d, groups=g, padding_mode=mode)
    _close(out, want)
    dx, dw, db = conv2d_backward(dout, cache)
    _close(dx, dx_t)
    _close(dw, dw_t)
    _close(db, db_t)


def test_conv2d_matches_nn_conv2d_module_with_asymmetric_settings() -> None:
    rng = np.random.default_rng(0)
    layer = torch.nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), bias=False).double()
    x = rng.standard_normal((1, 3, 9, 7))
    want = layer(torch.tensor(x)).detach().numpy()
    w = layer.weight.detach().numpy()
    out, cache = conv2d_forward(x, w, stride=(2, 1), padding=(1, 2), dilation=(2, 1))
    _close(out, want)
    assert conv2d_backward(np.ones_like(out), cache)[2] is None


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "match"),
    [
        ((1, 4, 5, 5), (6, 2, 3, 3), {"groups": 3}, r"groups must be >= 1 and divide both"),
        ((1, 3, 5, 5), (6, 1, 3, 3), {"groups": 2}, r"groups must be >= 1 and divide both"),
        ((1, 4, 2, 5), (2, 4, 3, 3), {}, r"conv output would be 0 along H: input 2, kernel 3, padding 0"),
        ((1, 4, 5, 5), (2, 4, 3, 3), {"stride": 0}, r"stride must be >= 1"),
        ((1, 4, 5, 5), (2, 4, 3, 3), {"dilation": 3}, r"conv output would be 0 along H.*dilation 3"),
        ((1, 4, 3, 3), (2, 4, 3, 3), {"padding": 3, "padding_mode": "reflect"}, r"reflect padding must be"),
        ((1, 4, 5, 5), (2, 3, 3, 3), {}, r"expects 3 input channels, but x has 4"),
    ],
)
def test_conv2d_rejects_what_torch_rejects(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], kwargs: dict, match: str
) -> None:
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    torch_kwargs = dict(kwargs)
    mode = torch_kwargs.pop("padding_mode", "zeros")
    with pytest.raises((RuntimeError, ValueError)):
        xt = torch.tensor(x)
        if mode != "zeros":
            p = torch_kwargs.pop("padding")
            xt = F.pad(xt, (p,) * 4, mode=mode)
        F.conv2d(xt, torch.tensor(w), **torch_kwargs)
    with pytest.raises(ValueError, match=match):
        conv2d_forward(x, w, **kwargs)


# ---- conv_transpose2d -------------------------------------------------------------------------------

TRANSPOSE_GRID = list(
    itertools.product(
        [1, 2, 3],  # stride
        [0, 1, 2],  # padding
        [0, 1],  # output_padding
        [1, 2],  # dilation
        [1, 2],  # groups
        [(4, 5), (5, 4)],  # odd / even input sizes
    )
)


@pytest.mark.parametrize(("s", "p", "op", "d", "g", "size"), TRANSPOSE_GRID)
def test_conv_transpose2d_matches_torch(
    s: int, p: int, op: int, d: int, g: int, size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(s * 100 + p * 10 + op)
    x = rng.standard_normal((2, 4, *size))
    w = rng.standard_normal((4, 6 // g, 3, 2))
    b = rng.standard_normal(6)
    kwargs = {"stride": s, "padding": p, "output_padding": op, "dilation": d, "groups": g}
    if op >= max(s, d):  # torch rejects this output_padding; the reference must too
        with pytest.raises(RuntimeError):
            F.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kwargs)
        with pytest.raises(
            ValueError, match="output_padding must be >= 0 and smaller than either stride or dilation"
        ):
            conv_transpose2d_forward(x, w, b, **kwargs)
        return
    want, dout, (dx_t, dw_t, db_t) = _torch_grads(
        lambda xt, wt, bt: F.conv_transpose2d(xt, wt, bt, **kwargs), [x, w, b]
    )
    out, cache = conv_transpose2d_forward(x, w, b, **kwargs)
    _close(out, want)
    dx, dw, db = conv_transpose2d_backward(dout, cache)
    _close(dx, dx_t)
    _close(dw, dw_t)
    _close(db, db_t)


def test_conv_transpose2d_rejects_empty_output_and_bad_groups() -> None:
    with pytest.raises(ValueError, match=r"transposed conv output would be -2 along H"):
        conv_transpose2d_forward(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 2, 2)), padding=2)
    with pytest.raises(ValueError, match=r"groups=2, in_channels=3"):
        conv_transpose2d_forward(np.zeros((1, 3, 2, 2)), np.zeros((3, 1, 2, 2)), groups=2)


# ---- pooling ----------------------------------------------------------------------------------------

MAX_GRID = list(
    itertools.product(
        [2, 3],  # kernel
        [1, 2, 3],  # stride
        [0, 1],  # padding
        [1, 2],  # dilation
        [False, True],  # ceil_mode
        [(7, 6), (8, 9)],
    )
)


@pytest.mark.parametrize(("k", "s", "p", "d", "ceil", "size"), MAX_GRID)
def test_max_pool2d_and_indices_match_torch(
    k: int, s: int, p: int, d: int, ceil: bool, size: tuple[int, int]
) -> None:
    x = np.random.default_rng(k * 10 + s).standard_normal((2, 3, *size))
    want, dout, (dx_t,) = _torch_grads(lambda xt: F.max_pool2d(xt, k, s, p, d, ceil_mode=ceil), [x])
    _, idx_t = F.max_pool2d(torch.tensor(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    out, cache = max_pool2d_forward(x, k, s, p, d, ceil)
    _close(out, want)
    np.testing.assert_array_equal(cache.indices, idx_t.numpy())
    _close(max_pool2d_backward(dout, cache), dx_t)


AVG_GRID = list(
    itertools.product(
        [2, 3],  # kernel
        [None, 1, 2, 3],  # stride (None: the kernel)
        [0, 1],  # padding
        [False, True],  # ceil_mode
        [False, True],  # count_include_pad
        [(7, 6), (8, 9)],
    )
)


@pytest.mark.parametrize(("k", "s", "p", "ceil", "include", "size"), AVG_GRID)
def test_avg_pool2d_matches_torch(
    k: int, s: int | None, p: int, ceil: bool, include: bool, size: tuple[int, int]
) -> None:
    x = np.random.default_rng(k).standard_normal((2, 3, *size))
    want, dout, (dx_t,) = _torch_grads(
        lambda xt: F.avg_pool2d(xt, k, s, p, ceil_mode=ceil, count_include_pad=include), [x]
    )
    out, cache = avg_pool2d_forward(x, k, s, p, ceil, count_include_pad=include)
    _close(out, want)
    _close(avg_pool2d_backward(dout, cache), dx_t)


@pytest.mark.parametrize(
    ("k", "s", "p", "ceil", "size"),
    list(itertools.product([2, 3], [1, 2, 3], [0, 1], [False, True], [(7, 6), (8, 9)])),
)
def test_sum_pool2d_matches_torch(k: int, s: int, p: int, ceil: bool, size: tuple[int, int]) -> None:
    x = np.random.default_rng(s).standard_normal((2, 3, *size))
    # a sum pool is an average pool whose divisor is 1
    want, dout, (dx_t,) = _torch_grads(lambda xt: F.avg_pool2d(xt, k, s, p, ceil, divisor_override=1), [x])
    out, cache = sum_pool2d_forward(x, k, s, p, ceil)
    _close(out, want)
    _close(sum_pool2d_backward(dout, cache), dx_t)
    # and the product of kernel size and average, where no window touches padding
    if p == 0 and not ceil:
        avg, _ = avg_pool2d_forward(x, k, s)
        _close(out, avg * k * k)


def test_pool_rejects_what_torch_rejects() -> None:
    x = np.zeros((1, 1, 5, 5))
    with pytest.raises(RuntimeError):
        F.max_pool2d(torch.tensor(x), 2, 1, 2)
    with pytest.raises(
        ValueError,
        match=r"padding must be at most half the kernel size along H.*received padding 2 with kernel 2",
    ):
        max_pool2d_forward(x, 2, 1, 2)
    with pytest.raises(ValueError, match=r"pool output would be 0 along H: input 5, kernel 6"):
        avg_pool2d_forward(x, 6)
    with pytest.raises(ValueError, match=r"4-D array \(N, C, H, W\); received shape \(5, 5\)"):
        max_pool2d_forward(x[0, 0], 2)


@pytest.mark.parametrize(
    ("k", "s", "p", "size", "output_size"),
    [
        (2, None, 0, (8, 6), None),
        (2, 2, 0, (7, 9), (7, 9)),  # odd input: output_size restores the lost row/column
        (3, 2, 1, (7, 8), (7, 8)),
        (3, 2, 1, (9, 9), None),
        (3, 3, 0, (9, 10), (9, 10)),
        (2, 1, 0, (5, 6), None),
    ],
)
def test_max_unpool2d_matches_torch(
    k: int, s: int | None, p: int, size: tuple[int, int], output_size: tuple[int, int] | None
) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, *size))
    pooled, cache = max_pool2d_forward(x, k, s, p)
    idx = torch.tensor(cache.indices)
    want, dout, (dp_t,) = _torch_grads(lambda pt: F.max_unpool2d(pt, idx, k, s, p, output_size), [pooled])
    out, ucache = max_unpool2d_forward(pooled, cache.indices, k, s, p, output_size)
    _close(out, want)
    _close(max_unpool2d_backward(dout, ucache), dp_t)
    if output_size is not None:
        assert out.shape[-2:] == size


def test_max_unpool2d_rejects_bad_output_size_and_indices() -> None:
    pooled, cache = max_pool2d_forward(np.zeros((1, 1, 6, 6)), 2)
    with pytest.raises(ValueError, match=r"output_size along H must lie strictly between 4 and 8"):
        max_unpool2d_forward(pooled, cache.indices, 2, output_size=(9, 6))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 36\)"):
        max_unpool2d_forward(pooled, cache.indices + 100, 2)


# ---- relu, linear, cross-entropy --------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4, 5)])
def test_relu_matches_torch(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape)
    x.flat[0] = 0.0  # the kink: PyTorch's gradient there is 0
    want, dout, (dx_t,) = _torch_grads(F.relu, [x])
    out, mask = relu_forward(x)
    _close(out, want)
    _close(relu_backward(dout, mask), dx_t)


@pytest.mark.parametrize(
    ("lead", "n_in", "n_out", "bias"), [((4,), 5, 3, True), ((2, 3), 6, 2, False), ((1,), 1, 1, True)]
)
def test_linear_matches_torch(lead: tuple[int, ...], n_in: int, n_out: int, bias: bool) -> None:
    rng = np.random.default_rng(n_in)
    x, w, b = (
        rng.standard_normal((*lead, n_in)),
        rng.standard_normal((n_out, n_in)),
        rng.standard_normal(n_out),
    )
    arrays = [x, w, b] if bias else [x, w]
    want, dout, grads = _torch_grads(F.linear, arrays)
    out, cache = linear_forward(x, w, b if bias else None)
    _close(out, want)
    dx, dw, db = linear_backward(dout, cache)
    _close(dx, grads[0])
    _close(dw, grads[1])
    if bias:
        _close(db, grads[2])
    else:
        assert db is None
    with pytest.raises(ValueError, match=r"in_features == x.shape\[-1\]"):
        linear_forward(x, np.zeros((n_out, n_in + 1)))


@pytest.mark.parametrize(("n", "k", "scale"), [(4, 3, 1.0), (7, 10, 5.0), (1, 2, 1.0), (3, 4, 1000.0)])
def test_softmax_cross_entropy_matches_torch(n: int, k: int, scale: float) -> None:
    rng = np.random.default_rng(k)
    logits = rng.standard_normal((n, k)) * scale  # scale 1000 checks the log-sum-exp stabilisation
    targets = rng.integers(0, k, n)
    lt = _leaf(logits)
    loss_t = F.cross_entropy(lt, torch.tensor(targets))
    (loss_t * 2.5).backward()
    loss, cache = softmax_cross_entropy_forward(logits, targets)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, loss_t.item(), **TOL)
    _close(softmax_cross_entropy_backward(2.5, cache), lt.grad.numpy())  # type: ignore[union-attr]


def test_cross_entropy_rejects_bad_targets() -> None:
    with pytest.raises(
        ValueError, match=r"targets must be integer class indices in \[0, 3\); received \[0, 3\]"
    ):
        softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"logits must be \(N, K\) and targets \(N,\)"):
        softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0]))


@pytest.mark.parametrize(("kernel", "d"), [((3, 3), 1), ((2, 4), 1), ((3, 2), 2), ((4, 4), 2)])
@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_conv2d_same_and_valid_padding_match_torch(kernel: tuple[int, int], d: int) -> None:
    rng = np.random.default_rng(kernel[1])
    x, w = rng.standard_normal((1, 2, 9, 8)), rng.standard_normal((3, 2, *kernel))
    for padding in ("same", "valid"):
        want, dout, (dx_t, dw_t) = _torch_grads(
            lambda xt, wt, pad=padding: F.conv2d(xt, wt, padding=pad, dilation=d), [x, w]
        )
        out, cache = conv2d_forward(x, w, padding=padding, dilation=d)
        _close(out, want)
        dx, dw, _ = conv2d_backward(dout, cache)
        _close(dx, dx_t)
        _close(dw, dw_t)
    assert conv2d_forward(x, w, padding="same", dilation=d)[0].shape[-2:] == (9, 8)


@settings(max_examples=40)
@given(
    groups=st.sampled_from([1, 2, 3]),
    per_group=st.tuples(st.integers(1, 2), st.integers(1, 2)),  # (in, out) channels per group
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_conv2d_random_configurations_match_torch_or_both_reject(
    groups: int,
    per_group: tuple[int, int],
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    rng = np.random.default_rng(sum(size) + sum(kernel))
    x = rng.standard_normal((1, groups * per_group[0], *size))
    w = rng.standard_normal((groups * per_group[1], per_group[0], *kernel))
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    try:
        want, dout, (dx_t, dw_t) = _torch_grads(lambda xt, wt: F.conv2d(xt, wt, **kwargs), [x, w])
    except RuntimeError:
        with pytest.raises(ValueError, match="conv output would be 0"):
            conv2d_forward(x, w, **kwargs)
        return
    out, cache = conv2d_forward(x, w, **kwargs)
    _close(out, want)
    dx, dw, _ = conv2d_backward(dout, cache)
    _close(dx, dx_t)
    _close(dw, dw_t)


def test_one_by_one_conv_is_a_linear_layer_at_every_pixel() -> None:
    # seed 001: a 6x6x32 input through five 1x1 filters gives 6x6x5
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((1, 32, 6, 6)), rng.standard_normal((5, 32, 1, 1)), rng.standard_normal(5)
    out, _ = conv2d_forward(x, w, b)
    assert out.shape == (1, 5, 6, 6)
    # (1, 32, 6, 6) -> (36, 32) pixels as rows
    per_pixel, _ = linear_forward(x[0].reshape(32, 36).T, w[:, :, 0, 0], b)
    _close(out[0].reshape(5, 36).T, per_pixel)


@pytest.mark.parametrize("module", ["_common", "_text", "conv", "pool", "ops", "loss", "explain"])
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"cnnlab.reference.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
