"""Grad-CAM (Selvaraju et al. 2017) and gradient saliency (Simonyan et al. 2014) for any model.

Grad-CAM weighs the activation maps ``A`` (C, h, w) of a spatial layer by the mean gradient of the
class score over each map, ``cam = relu(sum_c mean(dS/dA_c) * A_c)``, and upsamples it to the input.
The layer defaults to the module whose output is the last spatial map (more than one position).
Saliency is ``max_c |dS/dx|``. Hooks are removed and in-place flags restored afterwards.

A model with per-pixel class scores ``(N, K, H, W)`` (a segmentation network) gets Seg-Grad-CAM
(Vinogradova et al. 2020): the score is ``S = sum_{p in M} y_c(p)``, class ``c``'s logit summed over
the pixels ``M`` predicted as ``c``, and the layer defaults to the bottleneck (the last of the smallest
maps, :func:`bottleneck_layer`), where the decoder has not yet copied the prediction back.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
...                     nn.Linear(4, 2))
>>> grad_cam(net, torch.rand(1, 1, 8, 8)).cam.shape
torch.Size([8, 8])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.viz.grid import compact, figure_array, label_image, new_figure, save_png
from cnnlab.viz.hooks import is_passive, no_inplace, record_outputs, released_hooks
from cnnlab.viz.images import to_display
from cnnlab.viz.rf import check_layer

__all__ = [
    "GradCam",
    "bottleneck_layer",
    "cam_overlay",
    "default_cam_layer",
    "grad_cam",
    "gradcam_figure",
    "gradcam_grid",
    "last_spatial_layer",
    "segmentation_target",
]


@dataclass
class GradCam:
    """Result of :func:`grad_cam` for one image: maps are ``(H, W)`` in 0..1 at input resolution."""

    cam: torch.Tensor
    saliency: torch.Tensor
    raw_cam: torch.Tensor  # (h, w) at the layer's resolution, before normalisation
    layer: str
    target: int
    probs: torch.Tensor  # (num_classes,): softmax; per-pixel models: each class's share of the predicted pixels
    region: torch.Tensor | None = None  # per-pixel models: (H', W') bool, the pixels whose class scores S sums

    @property
    def per_pixel(self) -> bool:
        """True for Seg-Grad-CAM (a model with per-pixel class scores)."""
        return self.region is not None


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the module that outputs the last ``(N, C, h, w)`` map with ``h * w > 1``.

    That map is often made by a block's own code (a residual block's ``relu(out + shortcut)``), so
    the innermost module returning it is named, leaf or block: ``layer3.2`` of a CIFAR ResNet (what
    pytorch-grad-cam users pick as ``model.layer4[-1]``), not its ``bn2`` before the shortcut add.

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    >>> last_spatial_layer(net, torch.rand(1, 1, 8, 8))
    '1'
    """
    calls, spatial = _spatial_calls(model, x)
    last = spatial[-1][2]
    return next(n for n, _, out in calls if out is last)  # calls end innermost first


def bottleneck_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the module that outputs the last of the smallest ``(N, C, h, w)`` maps with ``h * w > 1``.

    An encoder-decoder's bottleneck: Seg-Grad-CAM's default layer. A later layer at full resolution
    (the decoder's last conv) only echoes the prediction; the bottleneck shows what context it used.

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 1),
    ...                     nn.Upsample(scale_factor=2), nn.Conv2d(2, 3, 1))
    >>> bottleneck_layer(net, torch.rand(1, 1, 8, 8))
    '2'
    """
    calls, spatial = _spatial_calls(model, x)
    smallest = min(out.shape[2] * out.shape[3] for _, _, out in spatial)
    last = [c for c in spatial if c[2].shape[2] * c[2].shape[3] == smallest][-1][2]
    return next(n for n, _, out in calls if out is last)


def _spatial_calls(
    model: nn.Module, x: torch.Tensor
) -> tuple[list[tuple[str, nn.Module, torch.Tensor]], list[tuple[str, nn.Module, torch.Tensor]]]:
    """Every call, and the calls that output a map with more than one position (passive ones last resort)."""
    calls = record_outputs(model, x)
    spatial = [(n, m, out) for n, m, out in calls if out.ndim == 4 and out.shape[2] * out.shape[3] > 1]
    spatial = [c for c in spatial if not is_passive(c[1])] or spatial
    if not spatial:
        raise ValueError(
            f"Grad-CAM needs a layer with a spatial output (N, C, h, w); {type(model).__name__} has no "
            f"module with one for an input of shape {tuple(x.shape)}."
        )
    return calls, spatial


def default_cam_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The layer :func:`grad_cam` explains by default: :func:`bottleneck_layer` for a model whose output
    is a map of class scores ``(N, K, H, W)``, else :func:`last_spatial_layer`."""
    was_training = model.training
    model.eval()
    try:
        with no_inplace(model), torch.no_grad():
            out = model(x)
    finally:
        model.train(was_training)
    per_pixel = isinstance(out, torch.Tensor) and out.ndim == 4
    return bottleneck_layer(model, x) if per_pixel else last_spatial_layer(model, x)


def segmentation_target(pred: torch.Tensor) -> int:
    """The class Seg-Grad-CAM explains by default: the non-background class (id >= 1) predicted on the most
    pixels of ``pred`` ``(H, W)``, or 0 (background, cnnlab's mask convention) when only 0 is predicted.

    >>> segmentation_target(torch.tensor([[0, 0, 2], [1, 2, 2]]))
    2
    """
    counts = torch.bincount(pred.flatten())
    counts[0] = 0
    return int(counts.argmax()) if counts.sum() > 0 else 0


def _normalise(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)


def grad_cam(model: nn.Module, x: torch.Tensor, *, target: int | None = None, layer: str | None = None) -> GradCam:
    """Grad-CAM and saliency of class ``target`` (default: the predicted class) for one image.

    ``x`` is the preprocessed input ``(1, C, H, W)`` or ``(C, H, W)``; ``layer`` a module name (default
    :func:`last_spatial_layer`). A model with per-pixel scores gets Seg-Grad-CAM: ``target`` defaults
    to :func:`segmentation_target`, the score sums the target's logit over the pixels predicted as it
    (over every pixel when it is predicted nowhere) and ``layer`` defaults to :func:`bottleneck_layer`
    (:func:`default_cam_layer` picks).
    """
    x = (x.unsqueeze(0) if x.ndim == 3 else x)[:1].detach().float()
    name = layer if layer is not None else default_cam_layer(model, x)
    module = check_layer(model, name)
    captured: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _args: Any, out: Any) -> None:
        captured["a"] = out

    was_training = model.training
    model.eval()
    try:
        with no_inplace(model), released_hooks() as handles, torch.enable_grad():
            handles.append(module.register_forward_hook(keep))
            xg = x.clone().requires_grad_(True)
            logits = model(xg)
            got = captured.get("a")
            if not isinstance(got, torch.Tensor) or got.ndim != 4:
                what = (
                    "was not called in the forward pass"
                    if got is None
                    else (
                        f"outputs shape {tuple(got.shape)}"
                        if isinstance(got, torch.Tensor)
                        else f"outputs {type(got).__name__}"
                    )
                )
                raise ValueError(
                    f"--layer {name!r} {what}, not a feature map (N, C, h, w); Grad-CAM needs a spatial layer, e.g. "
                    f"{default_cam_layer(model, x)!r} (the default)."
                )
            if logits.ndim not in (2, 4):
                raise ValueError(
                    "Grad-CAM needs class scores (N, classes), or per-pixel class scores (N, classes, H, W) for "
                    f"Seg-Grad-CAM; the model returned {tuple(logits.shape)}."
                )
            pred = logits[0].detach().argmax(0)  # () or (H', W')
            cls = (int(pred) if logits.ndim == 2 else segmentation_target(pred)) if target is None else int(target)
            if not 0 <= cls < logits.shape[1]:
                raise ValueError(f"--target must be a class index in 0..{logits.shape[1] - 1}; received {target}.")
            region = None
            if logits.ndim == 4:  # Seg-Grad-CAM: the class's logit summed over the pixels predicted as it
                region = pred == cls
                region = region if bool(region.any()) else torch.ones_like(region)  # predicted nowhere: every pixel
                score = (logits[0, cls] * region).sum()
            else:
                score = logits[0, cls]
            act = captured["a"]
            g_act, g_x = torch.autograd.grad(score, [act, xg])
    finally:
        model.train(was_training)
    weights = g_act[0].mean(dim=(1, 2))  # (C, h, w) -> (C,)
    raw = F.relu((weights[:, None, None] * act[0].detach()).sum(0))  # (h, w)
    up = F.interpolate(raw[None, None], size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0]
    saliency = g_x[0].abs().amax(0)  # (C, H, W) -> (H, W)
    if region is None:
        probs = logits[0].detach().softmax(0)
    else:  # each class's share of the predicted pixels
        probs = torch.bincount(pred.flatten(), minlength=logits.shape[1]).float() / pred.numel()
    return GradCam(_normalise(up), _normalise(saliency), raw.detach(), name, cls, probs, region)


def gradcam_figure(
    image: torch.Tensor,
    res: GradCam,
    classes: Sequence[str] = (),
    path: str | os.PathLike[str] | None = None,
    *,
    top: int = 3,
) -> np.ndarray:
    """The image, the Grad-CAM overlay and the saliency map side by side, titled with the top classes.

    ``image`` is the picture as shown (``(C, H, W)``, uint8 or float, grayscale or RGB) at the size the
    maps have. Returns ``uint8 (H, W, 3)`` and writes a PNG to ``path`` when given.
    """

    def name(i: int) -> str:
        return str(classes[i]) if i < len(classes) else f"class {i}"

    shown = to_display(image).astype(np.float64) / 255  # (H, W, 3), grayscale repeated
    fig = new_figure(9.0, 3.6)
    axes = fig.subplots(1, 3)  # type: ignore[attr-defined]
    axes[0].imshow(shown, interpolation="nearest")
    best = res.probs.topk(min(top, res.probs.numel()))
    lines = ", ".join(f"{name(int(i))} {float(p):.0%}" for p, i in zip(best.values, best.indices))
    axes[0].set_title(f"{'pixels' if res.per_pixel else 'input'}: {lines}"[:60], fontsize=8)
    axes[1].imshow(shown, interpolation="nearest")
    axes[1].imshow(res.cam.numpy(), cmap="jet", alpha=0.45, interpolation="bilinear")
    empty = " (0 everywhere)" if float(res.raw_cam.max()) <= 0 else ""  # no position raises the class score
    method = "Seg-Grad-CAM" if res.per_pixel else "Grad-CAM"
    axes[1].set_title(f"{method} of {name(res.target)} at layer {res.layer}"[: 60 - len(empty)] + empty, fontsize=8)
    axes[2].imshow(res.saliency.numpy(), cmap="gray", interpolation="nearest")
    axes[2].set_title("saliency max|dS/dx|", fontsize=8)
    for ax in axes:
        ax.axis("off")
    compact(fig, left=0.01, right=0.99, bottom=0.02, top=0.9, wspace=0.05)
    picture = figure_array(fig)
    if path is not None:
        save_png(picture, Path(path))
    return picture


def cam_overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.45) -> np.ndarray:
    """``uint8 (H, W, 3)``: the image blended with the ``jet`` colours of ``cam`` ((H, W) in 0..1).

    >>> cam_overlay(torch.zeros(1, 4, 4, dtype=torch.uint8), torch.ones(4, 4)).shape
    (4, 4, 3)
    """
    import matplotlib

    heat = matplotlib.colormaps["jet"](cam.clamp(0, 1).numpy())[..., :3] * 255.0  # (H, W, 3)
    out = (1 - alpha) * to_display(image).astype(np.float64) + alpha * heat
    return np.asarray(out.round().clip(0, 255), dtype=np.uint8)


def _grow(a: np.ndarray, k: int) -> np.ndarray:
    return a.repeat(k, axis=0).repeat(k, axis=1)  # (H, W, 3) -> (kH, kW, 3), nearest neighbour


def gradcam_grid(
    images: Sequence[torch.Tensor], results: Sequence[GradCam], classes: Sequence[str] = (), *, size: int = 96
) -> np.ndarray:
    """One column per image: Grad-CAM overlay above saliency, captioned "class probability" (Seg-Grad-CAM:
    "class share-of-pixels px").

    Drawn with NumPy and Pillow (no matplotlib figure: ~20x faster, which the report needs). Each
    panel is scaled by a whole factor (nearest neighbour) to about ``size`` pixels.
    """
    columns = []
    for image, res in zip(images, results):
        h, w = res.cam.shape
        k = max(1, size // max(h, w))
        sal = (res.saliency.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        name = str(classes[res.target]) if res.target < len(classes) else str(res.target)
        share = f"{float(res.probs[res.target]):.0%}" + (" px" if res.per_pixel else "")
        top = label_image(_grow(cam_overlay(image, res.cam), k), f"{name[:12]} {share}")
        columns.append(np.concatenate([top, np.full((4, w * k, 3), 255, np.uint8), _grow(np.stack([sal] * 3, -1), k)]))
    height = max(c.shape[0] for c in columns)
    gap = np.full((height, 6, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for c in columns:
        pad = np.full((height - c.shape[0], c.shape[1], 3), 255, np.uint8)
        parts += [np.concatenate([c, pad]), gap]
    return np.concatenate(parts[:-1], axis=1)
