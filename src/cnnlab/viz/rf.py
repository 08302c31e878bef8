"""Theoretical and effective receptive field of one unit, drawn on an image side by side.

The theoretical receptive field comes from :func:`cnnlab.analysis.analyze` (size, jump and start per
axis); unit ``(i, j)`` of a layer has its centre at ``start + (i, j) * jump`` in input pixels and sees a
``size``-pixel square around it. The effective receptive field (Luo et al. 2016) is the magnitude of
the gradient of that unit (summed over channels) with respect to the input: usually a Gaussian-like
blob much smaller than the theoretical square. It is summarised by the radius holding 95% of the
gradient mass around the unit's centre.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))
>>> r = receptive_field(net, "1", torch.rand(1, 1, 16, 16))
>>> r.size, r.box
((5, 5), (6, 6, 10, 10))
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cnnlab.viz.grid import compact, figure_array, new_figure, save_png
from cnnlab.viz.hooks import no_inplace, released_hooks
from cnnlab.viz.images import to_display

__all__ = ["ReceptiveField", "check_layer", "erf_radius", "receptive_field", "rf_figure"]


@dataclass
class ReceptiveField:
    """One unit's receptive field. ``box`` = (top, left, bottom, right), inclusive input pixels, unclipped."""

    layer: str
    unit: tuple[int, int]
    centre: tuple[float, float]
    size: tuple[int, int]
    jump: tuple[float, float]
    box: tuple[int, int, int, int]
    erf: torch.Tensor  # (H, W) gradient magnitude, summed over input channels
    erf_radius: float  # Euclidean radius around the centre that holds `mass` of the gradient
    erf_size: int  # side of the centred square that holds `mass` of the gradient
    mass: float
    made_by: str = ""  # the operation that makes the layer's output (a container's last one; else the layer)


def _radii(shape: tuple[int, int], centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    dy, dx = np.abs(ys - centre[0]), np.abs(xs - centre[1])
    return np.sqrt(dy**2 + dx**2), np.maximum(dy, dx)


def erf_radius(grad: np.ndarray, centre: tuple[float, float], mass: float = 0.95) -> tuple[float, int]:
    """(Euclidean radius, centred square side) around ``centre`` that hold ``mass`` of ``grad`` (H, W).

    >>> g = np.zeros((9, 9)); g[4, 4] = 1.0; g[4, 6] = 1.0
    >>> erf_radius(g, (4.0, 4.0), 0.95)
    (2.0, 5)
    """
    g = np.abs(np.asarray(grad, dtype=np.float64))
    total = g.sum()
    if total <= 0:
        return 0.0, 0
    euclid, cheb = _radii((g.shape[0], g.shape[1]), centre)

    def smallest(dist: np.ndarray) -> float:
        order = np.argsort(dist, axis=None, kind="stable")
        cum = np.cumsum(g.flat[order]) / total
        k = int(np.searchsorted(cum, mass - 1e-12))
        return float(dist.flat[order[min(k, order.size - 1)]])

    half = smallest(cheb)
    # a square of half-side h around a centre at a pixel centre covers 2h + 1 pixels per axis
    return smallest(euclid), round(2 * half + 1)


def check_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module called ``layer`` (a leaf or a container); ValueError with the closest names when there is none.

    >>> check_layer(nn.Sequential(nn.Conv2d(1, 2, 3)), "0")
    Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))
    """
    modules = dict(model.named_modules())
    if layer and layer in modules:
        found: nn.Module = modules[layer]
        return found
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.3)
    leaves = [n for n, m in modules.items() if n and not any(True for _ in m.children())]
    raise ValueError(
        f"--layer must name a module of {type(model).__name__}; received {layer!r}."
        + (f" Did you mean {', '.join(close)}?" if close else "")
        + f" Leaf modules: {', '.join(leaves[:25])}{' ...' if len(leaves) > 25 else ''}."
    )


def _output_row(report: Any, model: nn.Module, layer: str) -> Any:
    """The analysis row that makes ``layer``'s output: its own row, or for a container the last row inside it."""
    rows = [r for r in report.layers if r.name == layer]
    rows = rows or [r for r in report.layers if r.name.startswith(layer + ".")][-1:]
    if rows:
        return rows[0]
    traced = [r.name for r in report.layers if r.rf is not None and len(r.output_shape) == 4]
    close = difflib.get_close_matches(layer, traced, n=3, cutoff=0.3)
    raise ValueError(
        f"--layer {layer!r} ({type(dict(model.named_modules())[layer]).__name__}) does not run in the forward "
        f"pass of {type(model).__name__}, so it has no receptive field. Choose a layer that runs, e.g. "
        f"{', '.join(close or traced[-3:])}."
    )


def _theory(model: nn.Module, layer: str, input_shape: tuple[int, int, int]) -> Any:
    from cnnlab.analysis import analyze

    check_layer(model, layer)
    row = _output_row(analyze(model, input_shape), model, layer)
    if row.rf is None or len(row.output_shape) != 4:
        raise ValueError(
            f"--layer {layer!r} has output shape {row.output_shape} and no spatial receptive field; "
            "choose a conv, pool or activation layer with an (N, C, h, w) output."
        )
    return row


def receptive_field(
    model: nn.Module, layer: str, x: torch.Tensor, *, unit: tuple[int, int] | None = None, mass: float = 0.95
) -> ReceptiveField:
    """Theoretical RF (from cnnlab.analysis) and effective RF (input gradient) of one unit of ``layer``.

    ``x`` is the preprocessed image ``(1, C, H, W)``; ``unit`` the (row, col) of the unit in the layer's
    output (default: the centre unit).
    """
    x = (x.unsqueeze(0) if x.ndim == 3 else x)[:1].detach().float()
    row = _theory(model, layer, tuple(x.shape[1:]))  # type: ignore[arg-type]
    h, w = row.output_shape[2:]
    ui, uj = unit if unit is not None else (h // 2, w // 2)
    if not (0 <= ui < h and 0 <= uj < w):
        raise ValueError(f"--unit must lie in the {h}x{w} output of layer {layer!r}; received ({ui}, {uj}).")
    centre = (row.rf.start[0] + ui * row.rf.jump[0], row.rf.start[1] + uj * row.rf.jump[1])
    size = (int(row.rf.size[0]), int(row.rf.size[1]))
    # the RF of a unit centred at c spans c - (size-1)/2 .. c + (size-1)/2 (whole pixels when size and
    # centre agree in parity; otherwise the half-pixel rounds outward)
    top, left = (math.floor(c - (s - 1) / 2) for c, s in zip(centre, size))
    box = (top, left, top + size[0] - 1, left + size[1] - 1)
    grad = _unit_gradient(model, layer, x, (ui, uj), tuple(row.output_shape[1:]))
    radius, side = erf_radius(grad.numpy(), centre, mass)
    jump = (float(row.rf.jump[0]), float(row.rf.jump[1]))
    return ReceptiveField(layer, (ui, uj), centre, size, jump, box, grad, radius, side, mass, row.name)


def _unit_gradient(
    model: nn.Module, layer: str, x: torch.Tensor, unit: tuple[int, int], expected: tuple[int, ...]
) -> torch.Tensor:
    module = dict(model.named_modules())[layer]
    captured: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _a: Any, out: Any) -> None:
        captured["a"] = out

    was_training = model.training
    model.eval()
    try:
        with no_inplace(model), released_hooks() as handles, torch.enable_grad():
            handles.append(module.register_forward_hook(keep))
            xg = x.clone().requires_grad_(True)
            model(xg)
            out = captured.get("a")
            if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != expected:
                # a container whose output is not what its last operation made (it returns an earlier tensor)
                raise ValueError(
                    f"--layer {layer!r} returns {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)}, "
                    f"not the {expected} map of its last operation, so its receptive field is not defined "
                    "here; choose one of its leaf modules instead."
                )
            (g,) = torch.autograd.grad(out[0, :, unit[0], unit[1]].sum(), xg)
    finally:
        model.train(was_training)
    return g[0].abs().sum(0)  # (C, H, W) -> (H, W)


def rf_figure(image: torch.Tensor, rf: ReceptiveField, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Left: the image with the theoretical RF square; right: the ERF heat map with both outlines."""
    from matplotlib.patches import Circle, Rectangle

    fig = new_figure(8, 4.2)
    ax1, ax2 = fig.subplots(1, 2)  # type: ignore[attr-defined]
    top, left, bottom, right = rf.box
    for ax in (ax1, ax2):
        ax.add_patch(
            Rectangle(
                (left - 0.5, top - 0.5),
                right - left + 1,
                bottom - top + 1,
                fill=False,
                edgecolor="red",
                linewidth=1.5,
            )
        )
        ax.plot([rf.centre[1]], [rf.centre[0]], "r+")
    ax1.imshow(to_display(image))
    ax1.set_title(f"{rf.layer} unit {rf.unit}: theoretical RF {rf.size[0]}x{rf.size[1]}", fontsize=9)
    ax2.imshow(rf.erf.numpy(), cmap="inferno")
    ax2.add_patch(Circle((rf.centre[1], rf.centre[0]), rf.erf_radius, fill=False, edgecolor="cyan"))
    ax2.set_title(f"effective RF: {rf.mass:.0%} of gradient within r={rf.erf_radius:.1f} px", fontsize=9)
    # show the whole box: where it reaches past the image, the unit sees padding (grey)
    h, w = image.shape[-2:]
    for ax in (ax1, ax2):
        ax.set_facecolor("#d9d9d9")
        ax.set_xlim(min(0, left) - 1.5, max(w - 1, right) + 1.5)  # one pixel of margin keeps the box visible
        ax.set_ylim(max(h - 1, bottom) + 1.5, min(0, top) - 1.5)
    if top < 0 or left < 0 or bottom >= h or right >= w:
        ax1.set_xlabel("grey: outside the image (padding)", fontsize=8)
    compact(fig, left=0.05, right=0.98, bottom=0.1, top=0.92)
    picture = figure_array(fig)
    if path is not None:
        save_png(picture, Path(path))
    return picture
