"""Global pooling after upsampling counts only the pixels PyTorch reads.

PyTorch clamps an upsampling's source indices to the map (edge replication), so the one unit of a global
pool or fc reads the upsampled map's input units 0 .. n-1, not the units -1 and n (bilinear) or -2 .. n+1
(bicubic) the infinite grid places beyond its borders. Reference: autograd back to the input (no padding
anywhere, so the textbook field is the pixels read). ``cnnlab explain rf`` follows the same arithmetic.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze
from cnnlab.arith import rf_conv, rf_input, rf_upsample
from cnnlab.arith.explain import explain_rf
from cnnlab.arith.receptive import rf_whole_map


class _UpThenPool(nn.Module):
    """A 3x3 conv, an interpolate, ``post``, global average pooling."""

    def __init__(self, post: nn.Module, **kwargs: Any) -> None:
        super().__init__()
        self.a, self.post, self.kwargs = nn.Conv2d(2, 2, 3), post, kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.post(F.interpolate(self.a(x), **self.kwargs)), 1)


UPSAMPLING: dict[str, dict[str, Any]] = {
    "bilinear x2": dict(scale_factor=2, mode="bilinear"),  # was 8 on 6x6
    "bicubic x2": dict(scale_factor=2, mode="bicubic"),  # was 10
    "bicubic x2 corners": dict(scale_factor=2, mode="bicubic", align_corners=True),  # was 8
    "bilinear x3": dict(scale_factor=3, mode="bilinear"),
    "nearest x2": dict(scale_factor=2),
}
POSTS = {
    "": lambda: nn.Identity(),
    "conv3": lambda: nn.Conv2d(2, 2, 3),
    "up x2": lambda: nn.Upsample(scale_factor=2, mode="bilinear"),
}


# a known limit: where the right border falls in a period of the pattern is not known on the infinite
# grid, so a second upsampling after nearest trims only what every phase over-reads (7 on 6x6)
SAFE_OVER = {("nearest x2", "up x2")}


@pytest.mark.parametrize("shape", [(2, 6, 6), (2, 7, 9)])
@pytest.mark.parametrize("post", sorted(POSTS))
@pytest.mark.parametrize("case", sorted(UPSAMPLING))
def test_global_pooling_after_upsampling(case: str, post: str, shape: tuple[int, int, int]) -> None:
    model = _UpThenPool(POSTS[post](), **UPSAMPLING[case]).double()
    rf = analyze(model, shape).layers[-1].rf
    positive(model)
    x = torch.rand(1, *shape, dtype=torch.float64, requires_grad=True)
    truth = widest_reach(model(x), x)
    assert truth == shape[1:] and rf is not None
    if (case, post) in SAFE_OVER:
        assert all(s >= t for s, t in zip(rf.size, truth))
    else:
        assert rf.size == truth


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_whole_map_after_upsampling_in_arith_and_explain(mode: Any) -> None:
    up = rf_upsample(rf_conv(rf_input(1), 3), 2, mode)  # 6 pixels -> 4 units -> 8 units
    assert rf_whole_map(up, 8).size == (6,)  # was 8 (bilinear), 10 (bicubic)
    spec = "conv f=3; up s=2 mode=bilinear; gap"
    assert explain_rf(spec, "6,6,1")["output"]["size"] == [6, 6]  # was 8
