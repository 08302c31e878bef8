"""The receptive-field recurrence against autograd: which input pixels reach one output unit.

Random 1-D and 2-D stacks of convolutions (stride, padding, dilation), pooling, transposed
convolutions and upsampling are built from real torch layers with all-positive weights; the gradient
of one output unit with respect to the input marks exactly the input pixels it depends on.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from torch import nn

from cnnlab.arith import RF, rf_conv, rf_conv_transpose, rf_input, rf_upsample


def _layer(spec: tuple[Any, ...], ndim: int) -> tuple[nn.Module, Any]:
    kind, k, s, p, d = spec
    conv = {
        1: (nn.Conv1d, nn.ConvTranspose1d, nn.AvgPool1d),
        2: (nn.Conv2d, nn.ConvTranspose2d, nn.AvgPool2d),
    }
    conv_cls, convt_cls, pool_cls = conv[ndim]
    if kind == "conv":
        layer: nn.Module = conv_cls(1, 1, k, s, p, d, bias=False)
        return layer, lambda rf: rf_conv(rf, k, s, p, d)
    if kind == "pool":
        return pool_cls(k, s, p), lambda rf: rf_conv(rf, k, s, p)
    if kind == "convT":
        return convt_cls(1, 1, k, s, p, dilation=d, bias=False), lambda rf: rf_conv_transpose(rf, k, s, p, d)
    mode = "nearest" if k == 1 else ("linear" if ndim == 1 else "bilinear")
    return nn.Upsample(scale_factor=s, mode=mode), lambda rf: rf_upsample(rf, s, mode)


def _random_stack(rng: random.Random, upsampling: bool) -> list[tuple[Any, ...]]:
    specs: list[tuple[Any, ...]] = []
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        k, d = rng.randint(1, 5), rng.choice([1, 1, 2, 3])
        if upsampling and roll < 0.25:
            specs.append(("convT", k, rng.choice([1, 2, 3]), rng.randint(0, (k - 1) // 2), d))
        elif upsampling and roll < 0.4:
            specs.append(("up", rng.choice([1, 2]), 2, 0, 1))
        elif roll < 0.6:
            specs.append(("pool", k, rng.choice([1, 2]), rng.randint(0, k // 2), 1))
        else:
            specs.append(("conv", k, rng.choice([1, 1, 2]), rng.randint(0, 2), d))
    return specs


def _support(model: nn.Module, n: int) -> list[tuple[int, int] | None]:
    """Per output unit: (first, last) input pixel with a non-zero gradient, or None."""
    x = torch.ones(n, dtype=torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        return model(v.view(1, 1, n)).flatten()

    jac = torch.autograd.functional.jacobian(f, x, vectorize=True)  # (out, n)
    spans = []
    for row in jac:
        nz = torch.nonzero(row).flatten()
        spans.append((int(nz[0]), int(nz[-1])) if len(nz) else None)
    return spans


def _build(specs: list[tuple[Any, ...]], ndim: int) -> tuple[nn.Module, RF]:
    layers, rf = [], rf_input(ndim)
    for spec in specs:
        layer, update = _layer(spec, ndim)
        layers.append(layer)
        rf = update(rf)
    model = nn.Sequential(*layers).double()
    for p in model.parameters():
        # all-positive weights: no accidental cancellation hides a dependency
        nn.init.uniform_(p, 0.5, 1.5)
    return model, rf


@pytest.mark.parametrize("seed", range(60))
def test_conv_pool_stacks_match_autograd_exactly(seed: int) -> None:
    rng = random.Random(seed)
    model, rf = _build(_random_stack(rng, upsampling=False), 1)
    n = 96
    checked = 0
    for o, span in enumerate(_support(model, n)):
        centre = rf.start[0] + o * rf.jump[0]
        lo, hi = centre - (rf.size[0] - 1) / 2, centre + (rf.size[0] - 1) / 2
        if span is None or lo < 0 or hi > n - 1:
            continue  # the unit's field is clipped by the border (or lies in padding)
        # every unit not clipped by the border depends on exactly [lo, hi]
        assert span == (lo, hi), (o, span, rf)
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("seed", range(80))
def test_upsampling_stacks_size_is_exactly_the_widest_support(seed: int) -> None:
    rng = random.Random(1000 + seed)
    model, rf = _build(_random_stack(rng, upsampling=True), 1)
    n = 64
    widths, offsets = [], []
    for o, span in enumerate(_support(model, n)):
        centre = rf.start[0] + o * rf.jump[0]
        if span is None or span[0] <= 0 or span[1] >= n - 1 or not 0 < centre < n - 1:
            continue
        widths.append(span[1] - span[0] + 1)
        offsets.append(abs((span[0] + span[1]) / 2 - centre))
    if widths:
        assert max(widths) == rf.size[0], (widths, rf)
        # the geometric centre lies within half a field of the middle of what the unit sees
        assert max(offsets) <= rf.size[0] / 2, (offsets, rf)
    else:
        assert rf.size[0] >= 0


def test_2d_stack_matches_autograd_per_axis() -> None:
    specs = [("conv", 3, 1, 1, 1), ("pool", 2, 2, 0, 1), ("conv", 3, 1, 0, 2), ("conv", 5, 2, 2, 1)]
    model, rf = _build(specs, 2)
    model = nn.Sequential(*[m for m in model])
    x = torch.ones(1, 1, 40, 40, dtype=torch.float64, requires_grad=True)
    out = model(x)
    oy, ox = 3, 2
    out[0, 0, oy, ox].backward()
    grad = x.grad[0, 0]
    rows = torch.nonzero(grad.sum(1)).flatten()
    cols = torch.nonzero(grad.sum(0)).flatten()
    assert (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)) == rf.size == (20, 20)
    cy, cx = rf.center((oy, ox))
    assert (float(rows[0] + rows[-1]) / 2, float(cols[0] + cols[-1]) / 2) == (cy, cx)


def test_upsample_then_conv_counts_the_widest_unit() -> None:
    # nearest x4 then a 3-tap conv: an output unit sees 1 or 2 input pixels (continuous formula: 1.5)
    rf = rf_conv(rf_upsample(rf_input(1), 4), 3)
    assert rf.size == (2,)
    assert rf.jump == (0.25,)
    assert [rf.supports()[0].unit(u) for u in range(4)] == [(0, 0), (0, 0), (0, 1), (0, 1)]


def test_holes_and_rounding_that_the_continuous_formula_gets_wrong() -> None:
    # a 1-tap stride-2 transposed conv leaves every other unit empty; bilinear x2 then mixes a unit
    # with an empty neighbour, so each unit still sees one pixel (the continuous formula says 1.5 -> 2)
    rf = rf_upsample(rf_conv_transpose(rf_input(1), 1, 2), 2, "linear")
    assert rf.size == (1,)
    # pool 5/2 then bilinear x2 twice: 9 pixels (the continuous formula says 8)
    rf = rf_upsample(rf_upsample(rf_conv(rf_input(1), 5, 2, 2), 2, "linear"), 2, "linear")
    assert rf.size == (9,)


def test_hand_made_rf_uses_the_continuous_recurrence() -> None:
    # a hand-made RF (e.g. merged from branches) has no recorded support: continuous formula
    assert rf_conv(RF(size=(3,), jump=(0.5,), start=(0.0,)), 3).size == (4,)
    assert rf_conv(RF(size=(3,), jump=(2.0,), start=(1.0,)), 3).size == (7,)
    with pytest.raises(ValueError, match="jump > 0"):
        rf_conv(RF(size=(3,), jump=(0.0,), start=(0.0,)), 3)


def test_transposed_conv_rf_examples() -> None:
    # DCGAN-style k=4, s=2, p=1: each output draws on 2 inputs; output 0 sits at -0.25
    assert rf_conv_transpose(rf_input(1), 4, 2, 1) == RF(size=(2,), jump=(0.5,), start=(-0.25,))
    # k=2, s=2: every output copies one input (like nearest upsampling)
    assert rf_conv_transpose(rf_input(2), 2, 2) == rf_upsample(rf_input(2), 2)
    # stride 1 transposed conv grows the field like a conv
    assert rf_conv_transpose(rf_input(1), 3).size == rf_conv(rf_input(1), 3).size == (3,)


def _taps_union(sup: Any, units: list[int]) -> tuple[int, int] | None:
    # the union of the units' spans, unit by unit (the definition the O(period) walk must equal)
    spans = [sp for sp in (sup.unit(u) for u in units) if sp is not None]
    return (min(sp[0] for sp in spans), max(sp[1] for sp in spans)) if spans else None


@pytest.mark.parametrize("seed", range(4))
def test_support_walk_equals_the_tap_by_tap_union(seed: int) -> None:
    # supports with period > 1 (after convT/upsampling), then long kernels, strides and dilations
    from fractions import Fraction

    from cnnlab.arith import _support

    rng = random.Random(seed)
    for _ in range(150):
        sup = _support.identity()
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.5:
                sup = _support.conv_transpose(sup, rng.randint(1, 5), rng.randint(1, 4), rng.randint(0, 2), 1)
            else:
                sup = _support.upsample(sup, Fraction(rng.randint(2, 5), rng.randint(1, 2)), rng.random() < 0.5)
        k, s, p, d = rng.randint(1, 40), rng.randint(1, 5), rng.randint(0, 5), rng.randint(1, 6)
        conv = _support.conv(sup, k, s, p, d)
        assert conv.spans == tuple(
            _taps_union(sup, [o * s - p + j * d for j in range(k)]) for o in range(conv.period)
        )
        convt = _support.conv_transpose(sup, k, s, p, d)
        assert convt.spans == tuple(
            _taps_union(sup, [(o + p - j * d) // s for j in range(k) if (o + p - j * d) % s == 0])
            for o in range(convt.period)
        )


def test_whole_map_layers_do_not_walk_the_map() -> None:
    # fc and global pooling act like a kernel as large as the map; walking it tap by tap held a list
    # as long as the map (an OOM kill at 99999999999 pixels per side)
    import tracemalloc

    from cnnlab.arith.explain import explain_rf, explain_shape

    tracemalloc.start()
    d = explain_rf("convT f=4 s=2 p=1; conv f=3; gap", "1000000,3,3")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000, peak
    # convT output o reads inputs (o + 1 - j)/2, so outputs 0..2n-1 reach inputs -1..n (no borders)
    assert d["output"]["size"] == [1000002, 5]
    assert explain_rf("conv f=3; gap", "1000000,3,3")["output"]["size"] == [1000000, 3]
    assert explain_shape("conv f=3 c=8; fc 10", "99999999999,99999999999,3")["output"] == [10]
