"""Feature maps of one image, layer by layer, before and after the activation.

Every activation module (ReLU, GELU, SiLU, ...) is a natural place to look: its input is the
pre-activation map (conv + norm output) and its output the post-activation map. Models that apply
activations as functions (``F.relu``) have no such module; then the conv outputs are shown alone.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
>>> [(s.name, s.pre.shape[0]) for s in feature_stages(net, torch.rand(1, 1, 8, 8))]
[('1', 4)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cnnlab.viz.grid import label_image, save_png, stack_vertical, tile_grid
from cnnlab.viz.hooks import LeafOutput, record_leaves, record_outputs

__all__ = ["MAX_MAP_SIDE", "FeatureStage", "feature_figure", "feature_stages"]

MAX_MAP_SIDE = 128  # pixels: larger maps are averaged down in the picture (a 2000 px image made a 111 MB PNG)

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)


@dataclass
class FeatureStage:
    """Maps of one stage of one image: ``pre`` / ``post`` are ``(C, h, w)``; ``post`` None when unknown."""

    name: str
    type: str
    pre: torch.Tensor  # an activation's input, or (pre_is_output) the named layer's own output
    post: torch.Tensor | None  # the activation's output
    pre_is_output: bool = False
    activation: str | None = None  # the activation module ``post`` comes from, when it is another module
    act_input: torch.Tensor | None = None  # that activation's real input (the share of negatives is measured on it)

    @property
    def negative_share(self) -> float:
        """Share of the activation's inputs that were negative (what e.g. a ReLU sets to 0)."""
        seen = self.act_input if self.act_input is not None else self.pre
        return float((seen < 0).float().mean())


def _spatial(t: torch.Tensor | None) -> bool:
    return t is not None and t.ndim == 4


def _stage_after(calls: list[LeafOutput], idx: int) -> FeatureStage:
    # a non-activation layer: its output is "pre"; the next activation fed by that very tensor is "post"
    # (or, through a norm layer, the first activation of the same shape before the next conv)
    c = calls[idx]
    for later in calls[idx + 1 :]:
        if isinstance(later.module, nn.Conv2d):
            break
        if isinstance(later.module, _ACTIVATIONS) and later.output.shape == c.output.shape:
            seen = later.input[0] if later.input is not None else None
            return FeatureStage(c.name, type(c.module).__name__, c.output[0], later.output[0], True, later.name, seen)
    return FeatureStage(c.name, type(c.module).__name__, c.output[0], None, True)


def _container_outputs(
    model: nn.Module, x: torch.Tensor, names: list[str]
) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """``name -> (module, output)`` for the named modules that have children and were called."""
    wanted = {n for n in names if n in dict(model.named_modules())}
    if not wanted:
        return {}
    return {n: (m, out) for n, m, out in record_outputs(model, x) if n in wanted}


def feature_stages(model: nn.Module, x: torch.Tensor, layers: list[str] | None = None) -> list[FeatureStage]:
    """Pre/post-activation maps of image ``x`` ((1, C, H, W) or (C, H, W), preprocessed).

    Without ``layers``: one stage per spatial activation module (or per conv layer when the model has
    none). With ``layers``: one stage per named module (an activation shows its input and output, any
    other module its output and the activation that consumes it, a block (a module with children) its
    output). Unknown names raise ValueError.
    """
    x = x.unsqueeze(0) if x.ndim == 3 else x
    calls, _ = record_leaves(model, x[:1])
    if layers:
        by_name = {c.name: i for i, c in enumerate(calls)}
        containers = _container_outputs(model, x[:1], [n for n in layers if n not in by_name])
        missing = [n for n in layers if n not in by_name and n not in containers]
        if missing:
            names = [c.name for c in calls if _spatial(c.output)]
            raise ValueError(
                f"--layers {missing[0]!r} is not a module called in the forward pass; spatial layers: "
                f"{', '.join(names[:30])}. The name of a block (a module with children) shows that block's output."
            )
        stages = []
        for n in layers:
            if n in containers:  # a block: its output is what it hands on (after its own activation, if any)
                module, out = containers[n]
                if not _spatial(out):
                    raise ValueError(
                        f"--layers {n!r} outputs shape {tuple(out.shape)}, not a feature map (N, C, h, w)."
                    )
                stages.append(FeatureStage(n, type(module).__name__, out[0].clone(), None, True))
                continue
            c = calls[by_name[n]]
            if not _spatial(c.output):
                raise ValueError(
                    f"--layers {n!r} outputs shape {tuple(c.output.shape)}, not a feature map (N, C, h, w)."
                )
            if isinstance(c.module, _ACTIVATIONS) and _spatial(c.input):
                stages.append(FeatureStage(n, type(c.module).__name__, c.input[0], c.output[0]))  # type: ignore[index]
            else:
                stages.append(_stage_after(calls, by_name[n]))
        return stages
    acts = [c for c in calls if isinstance(c.module, _ACTIVATIONS) and _spatial(c.output) and _spatial(c.input)]
    if acts:
        return [FeatureStage(c.name, type(c.module).__name__, c.input[0], c.output[0]) for c in acts]  # type: ignore[index]
    convs = [i for i, c in enumerate(calls) if isinstance(c.module, nn.Conv2d)]
    return [_stage_after(calls, i) for i in convs]


def _maps_grid(maps: torch.Tensor, max_maps: int, tile: int) -> np.ndarray:
    m = maps[:max_maps].float()
    h, w = m.shape[1:]
    if max(h, w) > MAX_MAP_SIDE:  # a big image's maps: average down so the picture stays a sane size
        size = (max(1, h * MAX_MAP_SIDE // max(h, w)), max(1, w * MAX_MAP_SIDE // max(h, w)))
        m = torch.nn.functional.interpolate(m[None], size=size, mode="area")[0]  # (C, h, w) -> (C, h', w')
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    norm = ((m - lo) / (hi - lo).clamp_min(1e-12)).numpy()  # each map on its own 0..1
    return tile_grid(norm, tile=tile, cols=min(16, len(m)), cmap="viridis").image


def feature_figure(
    stages: list[FeatureStage],
    path: str | os.PathLike[str] | None = None,
    *,
    max_maps: int = 32,
    tile: int = 40,
) -> np.ndarray:
    """One block per stage: the pre-activation grid above the post-activation grid (labelled)."""
    if not stages:
        raise ValueError("no feature maps to draw: the model has no spatial conv or activation layers.")
    blocks = []
    for s in stages:
        shape = "x".join(str(v) for v in s.pre.shape)
        role = "output" if s.pre_is_output else "input"
        blocks.append(label_image(_maps_grid(s.pre, max_maps, tile), f"{s.name} ({s.type}) {role} {shape}"))
        if s.post is not None:
            act = f"activation {s.activation}" if s.activation else "activation"
            text = f"{s.name} after {act} ({s.negative_share:.0%} of its inputs were negative)"
            blocks.append(label_image(_maps_grid(s.post, max_maps, tile), text))
    picture = stack_vertical(blocks, gap=10)
    if path is not None:
        save_png(picture, Path(path))
    return picture
