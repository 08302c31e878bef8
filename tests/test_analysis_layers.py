"""cnnlab.analysis on cnnlab.layers convolutions whose padding is not a plain symmetric number."""

from __future__ import annotations

import torch

from cnnlab.analysis import analyze
from cnnlab.layers import Conv2d


def _support_start(net: torch.nn.Module, size: int) -> float:
    """Centre of the input pixels that reach output unit (0, 0), from autograd."""
    x = torch.ones(1, 1, size, size, requires_grad=True)
    net(x)[0, 0, 0, 0].backward()
    assert x.grad is not None
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero().flatten().float()
    # The padded window's centre = first read row + half the (un-clipped) kernel span.
    return float(rows.max()) - (net[0].kernel_size[0] - 1) / 2


def test_tf_same_at_stride_2_uses_the_applied_padding() -> None:
    net = torch.nn.Sequential(Conv2d(1, 1, 4, stride=2, padding="same", bias=False))
    torch.nn.init.ones_(net[0].weight)
    report = analyze(net, (1, 15, 15))
    conv = next(row for row in report.layers if row.kind == "conv")
    # TensorFlow's rule on 15 px, k=4, s=2: total 3 = left 1 + right 2, so unit 0 is centred at 0.5.
    assert conv.output_shape == (1, 1, 8, 8) and conv.rf.start == (0.5, 0.5)
    assert conv.rf.start[0] == _support_start(net, 15)
    # Every input row is read (the right padding covers the last one): no unread-border warning.
    assert not [w for w in report.warnings if w.rule == "unread-border"]
