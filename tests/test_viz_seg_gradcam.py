"""Seg-Grad-CAM (Vinogradova et al. 2020) for models with per-pixel class scores.

The reference is computed here by hand with autograd: ``S = sum_{p: pred(p) = c} y_c(p)``, the weights
are the mean gradient of ``S`` over each bottleneck map, ``cam = relu(sum_k w_k A_k)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.viz.gradcam import bottleneck_layer, grad_cam, gradcam_figure, gradcam_grid, segmentation_target


class _EncDec(nn.Module):
    """A tiny encoder-decoder: 8x8 -> 4x4 -> 2x2 (the bottleneck) -> 8x8 with 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.enc2 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.mid = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.dec = nn.Sequential(nn.Upsample(scale_factor=4, mode="bilinear"), nn.Conv2d(6, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.mid(self.enc2(self.enc1(x))))


def _model() -> _EncDec:
    torch.manual_seed(0)
    return _EncDec().eval()


def test_bottleneck_is_the_last_of_the_smallest_maps() -> None:
    # enc2 is 2x2 too, mid comes later; the innermost module returning its map is named (its ReLU)
    assert bottleneck_layer(_model(), torch.rand(1, 1, 8, 8)) == "mid.1"


def test_seg_grad_cam_matches_the_hand_computed_reference() -> None:
    model, x = _model(), torch.rand(1, 1, 8, 8)
    res = grad_cam(model, x)
    assert res.per_pixel and res.layer == "mid.1"
    with torch.no_grad():
        pred = model(x)[0].argmax(0)
    assert res.target == segmentation_target(pred)
    # the reference: S over the pixels predicted as the target, by hand
    act: dict[str, torch.Tensor] = {}
    handle = model.mid.register_forward_hook(lambda _m, _a, out: act.__setitem__("a", out))
    logits = model(x)
    handle.remove()
    region = pred == res.target
    assert res.region is not None and torch.equal(res.region, region)
    score = logits[0, res.target][region].sum()
    (grad,) = torch.autograd.grad(score, act["a"])
    raw = F.relu((grad[0].mean((1, 2))[:, None, None] * act["a"][0]).sum(0))
    assert torch.allclose(res.raw_cam, raw.detach(), atol=1e-6)
    shares = torch.bincount(pred.flatten(), minlength=3).float() / 64
    assert torch.allclose(res.probs, shares) and float(res.probs.sum()) == pytest.approx(1.0)


def test_a_class_predicted_nowhere_sums_over_every_pixel() -> None:
    model, x = _model(), torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        pred = model(x)[0].argmax(0)
    absent = [c for c in range(3) if not bool((pred == c).any())]
    if not absent:  # make class 2 absent: a large negative bias on its logit
        with torch.no_grad():
            model.dec[1].bias[2] = -1e4
        absent = [2]
    res = grad_cam(model, x, target=absent[0])
    assert res.region is not None and bool(res.region.all()) and float(res.probs[absent[0]]) == 0.0


def test_segmentation_target_prefers_foreground() -> None:
    assert segmentation_target(torch.zeros(4, 4, dtype=torch.long)) == 0  # background only
    pred = torch.zeros(4, 4, dtype=torch.long)
    pred[0, :2], pred[1:, 3] = 1, 2  # 2 pixels of class 1, 3 of class 2, 11 of background
    assert segmentation_target(pred) == 2


def test_saliency_follows_the_pixels_the_score_reads() -> None:
    """Class 1's score at every pixel is the mean of the top-left quadrant: only that quadrant has gradient."""

    class Quadrant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(1, 1, 1, bias=False)  # the only map, at the input's resolution
            nn.init.ones_(self.features.weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.features(x)
            one = a[:, :, :4, :4].mean((2, 3), keepdim=True).expand(-1, -1, 8, 8)
            return torch.cat([torch.zeros_like(one), one], 1)  # (N, 2, 8, 8): class 1 wins everywhere

    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, :4] = 1.0
    x[..., 4:, 4:] = 0.5  # bright too, but the score never reads it
    res = grad_cam(Quadrant(), x)
    assert res.target == 1 and res.layer == "features" and res.region is not None and bool(res.region.all())
    assert bool((res.saliency[:4, :4] == 1).all()) and float(res.saliency.sum()) == 16.0
    # Grad-CAM weighs whole maps (mean gradient x activation), so the unread bright corner shows too
    assert float(res.raw_cam[4:, 4:].min()) > 0 and float(res.raw_cam[:4, 4:].max()) == 0.0


def test_figures_say_seg_grad_cam(tmp_path: Path) -> None:
    model, x = _model(), torch.rand(1, 1, 8, 8)
    res = grad_cam(model, x)
    image = (x[0] * 255).to(torch.uint8)
    picture = gradcam_figure(image, res, ["background", "a", "b"], tmp_path / "cam.png")
    assert picture.ndim == 3 and (tmp_path / "cam.png").stat().st_size > 0
    grid = gradcam_grid([image, image], [res, res], ["background", "a", "b"], size=32)
    assert grid.shape[0] > 32 and grid.shape[1] > 64


def test_an_output_that_is_neither_scores_nor_a_map_is_one_paragraph() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(2))  # (N, 2, H*W)
    with pytest.raises(ValueError, match=r"per-pixel class scores \(N, classes, H, W\) for Seg-Grad-CAM"):
        grad_cam(net, torch.rand(1, 1, 6, 6), layer="0")
