"""cnnlab.arith agrees with real torch.nn layers on thousands of generated configurations.

For every configuration the real layer is built and run on a tiny tensor. Where torch accepts it,
cnnlab must accept it and give the same output shape and parameter count; where torch rejects it
(construction or forward raises), cnnlab must raise ValueError too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import arith

TORCH_ERRORS = (RuntimeError, ValueError, TypeError)


def _torch_result(build: Callable[[], nn.Module], shape: tuple[int, ...]) -> tuple[Any, int] | None:
    """(output spatial shape, param count) from torch, or None when torch rejects the configuration."""
    try:
        layer = build()
        with torch.no_grad():
            out = layer(torch.zeros(shape))
    except TORCH_ERRORS:
        return None
    return tuple(out.shape[2:]), sum(p.numel() for p in layer.parameters())


def _ours(fn: Callable[[], tuple[Any, int]]) -> tuple[Any, int] | None:
    try:
        return fn()
    except ValueError:
        return None


def _compare(
    configs: list[dict[str, Any]], torch_fn: Callable[..., Any], ours_fn: Callable[..., Any]
) -> None:
    mismatches, accepted, rejected = [], 0, 0
    for cfg in configs:
        want = torch_fn(**cfg)
        got = _ours(lambda cfg=cfg: ours_fn(**cfg))
        accepted += want is not None
        rejected += want is None
        if want != got:
            mismatches.append((cfg, want, got))
    assert not mismatches, f"{len(mismatches)} of {len(configs)} disagree, e.g. {mismatches[:5]}"
    # both outcomes must be exercised, or the comparison proves little
    assert accepted >= len(configs) // 4 and rejected >= len(configs) // 20, (accepted, rejected)


def _conv_configs(rng: random.Random, ndim: int, count: int) -> list[dict[str, Any]]:
    configs, kmax = [], 6 if ndim < 3 else 4
    for _ in range(count):
        pad: Any = rng.choice(
            [0, 0, 1, 1, 2, 3, -1, "same", "valid", tuple(rng.randint(0, 2) for _ in range(ndim))]
        )
        stride = 1 if pad == "same" and rng.random() < 0.8 else rng.choice([1, 1, 1, 2, 2, 3, 0, -1])
        configs.append(
            {
                "n": tuple(rng.randint(1, 10 if ndim < 3 else 7) for _ in range(ndim)),
                "k": tuple(rng.randint(1, kmax) for _ in range(ndim))
                if rng.random() < 0.3
                else rng.randint(1, kmax),
                "s": stride,
                "p": pad,
                "d": rng.choice([1, 1, 1, 1, 2, 3, 0]),
                "cin": rng.choice([2, 4, 6, 3]),
                "cout": rng.choice([2, 4, 6, 1]),
                "groups": rng.choice([1, 1, 1, 2, 2, 3]),
                "bias": rng.random() < 0.7,
            }
        )
    return configs


_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _torch_conv(n, k, s, p, d, cin, cout, groups, bias):
    cls = _CONV[len(n)]
    build = lambda: cls(cin, cout, k, stride=s, padding=p, dilation=d, groups=groups, bias=bias)  # noqa: E731
    return _torch_result(build, (1, cin, *n))


def _ours_conv(n, k, s, p, d, cin, cout, groups, bias):
    # torch allows padding='same' only at stride 1 (cnnlab follows TensorFlow for any stride)
    if p == "same" and s != 1:
        raise ValueError("torch: 'same' needs stride 1")
    params = arith.conv_params(cin, cout, k, groups, bias, ndim=len(n))
    return arith.conv_out(n, k, s, p, d), params


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("ndim", "count"), [(1, 500), (2, 900), (3, 300)])
def test_conv_matches_torch(ndim: int, count: int) -> None:
    configs = _conv_configs(random.Random(ndim), ndim, count)
    _compare(configs, _torch_conv, _ours_conv)


def _torch_conv_t(n, k, s, p, op, d, cin, cout, groups, bias):
    def build() -> nn.Module:
        return nn.ConvTranspose2d(cin, cout, k, s, p, op, groups=groups, bias=bias, dilation=d)

    result = _torch_result(build, (1, cin, *n))
    # torch returns an empty tensor for an output size of exactly 0; cnnlab calls that an error (an
    # empty feature map is always a design mistake), the one deliberate difference
    return None if result is not None and 0 in result[0] else result


def _ours_conv_t(n, k, s, p, op, d, cin, cout, groups, bias):
    params = arith.conv_transpose_params(cin, cout, k, groups, bias)
    return arith.conv_transpose_out(n, k, s, p, op, d), params


def test_conv_transpose2d_matches_torch() -> None:
    rng = random.Random(7)
    configs = [
        {
            "n": (rng.randint(1, 7), rng.randint(1, 7)),
            "k": rng.randint(1, 5) if rng.random() < 0.7 else (rng.randint(1, 5), rng.randint(1, 5)),
            "s": rng.choice([1, 2, 2, 3, 0]),
            "p": rng.choice([0, 0, 1, 2, 3, 5, -1]),
            "op": rng.choice([0, 0, 1, 2, 3]),
            "d": rng.choice([1, 1, 2, 3]),
            "cin": rng.choice([1, 2, 4, 6]),
            "cout": rng.choice([1, 2, 3, 4]),
            "groups": rng.choice([1, 1, 2]),
            "bias": rng.random() < 0.7,
        }
        for _ in range(600)
    ]
    _compare(configs, _torch_conv_t, _ours_conv_t)


def _torch_pool(kind, n, k, s, p, d, ceil_mode):
    def build() -> nn.Module:
        if kind == "max":
            return nn.MaxPool2d(k, s, p, d, ceil_mode=ceil_mode)
        return nn.AvgPool2d(k, s, p, ceil_mode=ceil_mode)

    return _torch_result(build, (1, 2, *n))


def _ours_pool(kind, n, k, s, p, d, ceil_mode):
    return arith.pool_out(n, k, s, p, d, ceil_mode=ceil_mode), 0


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d_matches_torch(kind: str) -> None:
    rng = random.Random(11 if kind == "max" else 13)
    configs = [
        {
            "kind": kind,
            "n": (rng.randint(1, 10), rng.randint(1, 10)),
            "k": rng.randint(1, 5) if rng.random() < 0.7 else (rng.randint(1, 5), rng.randint(1, 5)),
            "s": rng.choice([None, 1, 2, 2, 3, 0]),
            "p": rng.choice([0, 0, 1, 1, 2, 3]),
            "d": rng.choice([1, 1, 2, 3]) if kind == "max" else 1,
            "ceil_mode": rng.random() < 0.5,
        }
        for _ in range(600)
    ]
    _compare(configs, _torch_pool, _ours_pool)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_keeps_size_like_torch() -> None:
    # torch's padding='same' (stride 1) for every kernel 1..8, odd and even, with dilation
    for n in range(1, 12):
        for k in range(1, 9):
            for d in (1, 2):
                want = _torch_result(
                    lambda k=k, d=d: nn.Conv1d(1, 1, k, padding="same", dilation=d), (1, 1, n)
                )
                assert want is not None
                assert arith.conv_out(n, k, 1, "same", d) == want[0] == (n,)
                left, right = arith.same_padding(n, k, 1, d)[0]
                padded = nn.functional.pad(torch.arange(float(n)).view(1, 1, n), (left, right))
                # the padded input through a 'valid' conv equals torch's 'same' result
                conv = nn.Conv1d(1, 1, k, dilation=d, bias=False)
                same = nn.Conv1d(1, 1, k, dilation=d, bias=False, padding="same")
                same.weight.data.copy_(conv.weight.data)
                torch.testing.assert_close(conv(padded), same(torch.arange(float(n)).view(1, 1, n)))


def test_same_padding_tensorflow_rule_for_strides() -> None:
    # TF: output ceil(n / s) for any stride; extra padding on the right
    for n in range(1, 30):
        for k in range(1, 9):
            for s in range(1, 5):
                (out,) = arith.conv_out(n, k, s, "same")
                assert out == -(-n // s), (n, k, s)
                ((left, right),) = arith.same_padding(n, k, s)
                assert right - left in (0, 1)


def test_macs_match_torch_flop_counter() -> None:
    rng = random.Random(3)
    for _ in range(40):
        cin, cout, groups = rng.choice([(2, 4, 1), (4, 4, 2), (6, 3, 3), (3, 8, 1)])
        k, n, s = rng.randint(1, 4), rng.randint(5, 9), rng.randint(1, 2)
        x = torch.zeros(1, cin, n, n)
        for transposed in (False, True):
            cls = nn.ConvTranspose2d if transposed else nn.Conv2d
            layer = cls(cin, cout, k, s, groups=groups)
            with FlopCounterMode(display=False) as counter:
                out = layer(x)
            if transposed:
                ours = arith.conv_transpose_macs(cin, cout, k, (n, n), groups)
            else:
                ours = arith.conv_macs(cin, cout, k, tuple(out.shape[2:]), groups)
            assert 2 * ours == counter.get_total_flops(), (cin, cout, k, n, s, groups, transposed)
    lin = nn.Linear(120, 84)
    with FlopCounterMode(display=False) as counter:
        lin(torch.zeros(5, 120))
    assert 2 * arith.linear_macs(120, 84, positions=5) == counter.get_total_flops()


@pytest.mark.parametrize(("cin", "cout", "bias"), [(1, 1, True), (120, 84, True), (400, 120, False)])
def test_linear_and_batchnorm_params_match_torch(cin: int, cout: int, bias: bool) -> None:
    lin = nn.Linear(cin, cout, bias=bias)
    assert arith.linear_params(cin, cout, bias) == sum(p.numel() for p in lin.parameters())
    for affine in (True, False):
        bn = nn.BatchNorm2d(cout, affine=affine)
        assert arith.batchnorm_params(cout, affine) == sum(p.numel() for p in bn.parameters())
