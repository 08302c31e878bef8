"""LeNet-5 against the 1998 paper: the C3 connection table, trainable subsampling, layer sizes."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.models import create_model
from cnnlab.models.lenet import C3_TABLE, PartialConv2d, ScaledTanh, Subsampling


def test_c3_table_wiring_matches_the_paper() -> None:
    """Output map o has a non-zero gradient w.r.t. exactly the input maps of the table's row o."""
    torch.manual_seed(0)
    conv = PartialConv2d(C3_TABLE, 5)
    for o, row in enumerate(C3_TABLE):
        x = torch.randn(1, 6, 14, 14, requires_grad=True)
        conv(x)[0, o].sum().backward()
        seen = {i for i in range(6) if x.grad[0, i].abs().sum() > 0}
        assert seen == set(row), f"C3 map {o}"
    # Table I has 60 connections of 25 weights, plus 16 biases (the paper's 1,516 parameters).
    assert sum(p.numel() for p in conv.parameters()) == 1516
    assert sum(len(r) for r in C3_TABLE) == 60


def test_partial_conv_equals_a_masked_full_conv() -> None:
    """Reference: nn.Conv2d whose weights outside the table are zero gives the same outputs."""
    torch.manual_seed(1)
    conv = PartialConv2d(C3_TABLE, 5)
    full = nn.Conv2d(6, 16, 5)
    with torch.no_grad():
        full.weight.zero_()
        order = [o for fan in (3, 4, 6) for o, r in enumerate(C3_TABLE) if len(r) == fan]
        outs = iter(order)
        for g in conv.convs:
            for k in range(g.out_channels):
                o = next(outs)
                for j, i in enumerate(C3_TABLE[o]):
                    full.weight[o, i] = g.weight[k, j]
                full.bias[o] = g.bias[k]
    x = torch.randn(2, 6, 14, 14)
    torch.testing.assert_close(conv(x), full(x))


def test_subsampling_is_coefficient_times_block_sum_plus_bias() -> None:
    s = Subsampling(2)
    with torch.no_grad():
        s.weight.copy_(torch.tensor([0.5, -1.0]))
        s.bias.copy_(torch.tensor([1.0, 0.0]))
    x = torch.arange(32.0).view(1, 2, 4, 4)
    block_sum = x.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
    coef, bias = torch.tensor([0.5, -1.0]).view(1, 2, 1, 1), torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    expected = block_sum * coef + bias
    torch.testing.assert_close(s(x), expected)
    assert sum(p.numel() for p in s.parameters()) == 4  # one coefficient and one bias per map


def test_scaled_tanh_constants() -> None:
    f = ScaledTanh()
    torch.testing.assert_close(f(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=2e-4, rtol=0)
    assert abs(float(f(torch.tensor(100.0))) - 1.7159) < 1e-6


def test_layer_parameter_counts_of_the_paper() -> None:
    """C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164 (paper, section II.B)."""
    model = create_model("lenet5_classic")
    counts = [sum(p.numel() for p in m.parameters()) for m in model.features]
    counts = [c for c in counts if c]
    assert counts == [156, 12, 1516, 32, 48120]
    assert sum(p.numel() for p in model.fc6.parameters()) == 10164


def test_modern_lenet_takes_28x28_with_padding() -> None:
    model = create_model("lenet5", conv1_padding=2)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert model.forward_features(torch.zeros(1, 1, 28, 28)).shape == (1, 120, 1, 1)
