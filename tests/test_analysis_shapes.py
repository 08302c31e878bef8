"""Shapes from the meta-device capture equal a real forward pass: every zoo model and 300 random nets."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.analysis import ModelReport as AnalysisReport
from cnnlab.analysis import analyze
from cnnlab.analysis.capture import is_leaf
from cnnlab.models import create_model, list_models, model_info


def _real_shapes(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
    """Output shape of every outermost leaf-module call (first call) in a real CPU forward pass.

    A leaf's own children (a cnnlab layer's weight parametrization) run inside it and are not rows.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    leaves: list[str] = []
    for name, m in model.named_modules():
        if name and is_leaf(m) and not any(name.startswith(leaf + ".") for leaf in leaves):
            leaves.append(name)

            def hook(mod: nn.Module, args: Any, out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    shapes.setdefault(name, tuple(out.shape))

            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    final = out if isinstance(out, torch.Tensor) else out[0]
    return shapes, tuple(final.shape)


def _check(model: nn.Module, input_shape: tuple[int, ...]) -> AnalysisReport:
    model.eval()
    real, final = _real_shapes(model, torch.randn(1, *input_shape))
    report = analyze(model, input_shape, lint=False)
    rows = {r.name: r.output_shape for r in report.layers}
    for name, shape in real.items():
        assert rows[name] == shape, name
    assert report.layers[-1].output_shape == final or final in rows.values()
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    return report


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_shapes_match_forward(name: str) -> None:
    info = model_info(name)
    torch.manual_seed(0)
    _check(create_model(name, **info.test_kwargs), info.input_size)


# ---- random networks -------------------------------------------------------------------------


def _conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


class RandomNet(nn.Module):
    """A chain of blocks: conv, transposed conv, pooling, residual add, concat, upsample."""

    def __init__(self, blocks: list[tuple[str, dict[str, int]]], c_in: int) -> None:
        super().__init__()
        self.kinds = [kind for kind, _ in blocks]
        self.blocks = nn.ModuleList()
        c = c_in
        for kind, a in blocks:
            if kind == "conv":
                out = a["g"] * a["m"]
                self.blocks.append(
                    nn.Conv2d(c, out, a["k"], a["s"], a["p"], a["d"], groups=1 if c % a["g"] else a["g"])
                )
                c = out
            elif kind == "convT":
                g = 1 if c % a["g"] else a["g"]
                self.blocks.append(
                    nn.ConvTranspose2d(c, g * a["m"], a["k"], a["s"], a["p"], a["op"], groups=g, dilation=a["d"])
                )
                c = g * a["m"]
            elif kind == "maxpool":
                self.blocks.append(
                    nn.MaxPool2d(a["k"], a["s"], a["p"], dilation=a["d"], ceil_mode=bool(a["ceil"]))
                )
            elif kind == "avgpool":
                self.blocks.append(nn.AvgPool2d(a["k"], a["s"], a["p"], ceil_mode=bool(a["ceil"])))
            elif kind == "res":  # conv-BN-ReLU branch plus a 1x1 shortcut with the same stride
                body = nn.Sequential(
                    nn.Conv2d(c, c, 3, a["s"], a["d"], a["d"], bias=False), nn.BatchNorm2d(c)
                )
                self.blocks.append(nn.ModuleList([body, nn.Conv2d(c, c, 1, a["s"])]))
            elif kind == "cat":
                self.blocks.append(
                    nn.ModuleList([nn.Conv2d(c, a["m"], 1), nn.Conv2d(c, a["m"], 3, padding=1)])
                )
                c = 2 * a["m"]
            else:  # "up": functional interpolate
                self.blocks.append(nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.functional_shapes: list[tuple[int, ...]] = []  # outputs of add / cat / interpolate, in order
        for kind, block in zip(self.kinds, self.blocks):
            if kind == "res":
                y = block[0](x) + block[1](x)
                self._note(y)
                x = F.relu(y)
            elif kind == "cat":
                x = torch.cat([block[0](x), block[1](x)], dim=1)
                self._note(x)
            elif kind == "up":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                self._note(x)
            else:
                x = block(x)
        return torch.flatten(x, 1)

    def _note(self, y: torch.Tensor) -> None:
        if not isinstance(y, torch.fx.Proxy):  # a real run, not torch.fx tracing
            self.functional_shapes.append(tuple(y.shape))


@st.composite
def random_nets(draw: st.DrawFn) -> tuple[RandomNet, tuple[int, int, int]]:
    c = draw(st.integers(1, 4))
    h, w = draw(st.integers(6, 24)), draw(st.integers(6, 24))
    blocks: list[tuple[str, dict[str, int]]] = []
    n = min(h, w)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "conv", "convT", "maxpool", "avgpool", "res", "cat", "up"]))
        if kind == "conv":
            a = {"k": draw(st.integers(1, 5)), "s": draw(st.integers(1, 3)), "d": draw(st.integers(1, 3)),
                 "g": draw(st.sampled_from([1, 1, 2])), "m": draw(st.integers(1, 4))}  # fmt: skip
            a["p"] = draw(st.integers(0, a["d"] * (a["k"] - 1) // 2 + 1))
            new = _conv_out(n, a["k"], a["s"], a["p"], a["d"])
        elif kind == "convT":
            a = {"k": draw(st.integers(1, 4)), "s": draw(st.integers(1, 2)), "m": draw(st.integers(1, 4)),
                 "d": draw(st.integers(1, 2)), "g": draw(st.sampled_from([1, 1, 2]))}  # fmt: skip
            a["p"] = draw(st.integers(0, a["d"] * (a["k"] - 1) // 2))
            a["op"] = draw(st.integers(0, max(a["s"], a["d"]) - 1))  # output_padding < max(stride, dilation)
            new = (n - 1) * a["s"] - 2 * a["p"] + a["d"] * (a["k"] - 1) + a["op"] + 1
        elif kind in ("maxpool", "avgpool"):
            a = {"k": draw(st.integers(1, 3)), "s": draw(st.integers(1, 2)), "ceil": draw(st.integers(0, 1))}
            a["d"] = draw(st.integers(1, 2)) if kind == "maxpool" else 1
            a["p"] = draw(st.integers(0, a["k"] // 2))
            new = _conv_out(n, a["k"], a["s"], a["p"], a["d"])
        elif kind == "res":
            a = {"s": draw(st.integers(1, 2)), "d": draw(st.integers(1, 2))}
            new = _conv_out(n, 1, a["s"], 0, 1)
        elif kind == "cat":
            a, new = {"m": draw(st.integers(1, 3))}, n
        else:
            a, new = {}, 2 * n
        if new < 1 or new > 48:
            continue
        blocks.append((kind, a))
        n = new
    if not blocks:
        blocks.append(("conv", {"k": 1, "s": 1, "p": 0, "d": 1, "g": 1, "m": 2}))
    return RandomNet(blocks, c), (c, h, w)


@settings(max_examples=300, deadline=None)
@given(random_nets())
def test_random_networks_match_forward(case: tuple[RandomNet, tuple[int, int, int]]) -> None:
    net, shape = case
    try:
        real_out = net.eval()(torch.randn(1, *shape))
    except RuntimeError:
        # ceil-mode pooling and stride/padding mixes can leave an empty map: cnnlab must say where
        with pytest.raises(Exception, match="fails on input shape"):
            analyze(net, shape)
        return
    real_functional = net.functional_shapes
    report = _check(net, shape)
    assert report.layers[-1].output_shape == tuple(real_out.shape)
    # functional ops are graph nodes too: their shapes must match the real run's, in order
    assert [r.output_shape for r in report.layers if r.type in ("add", "cat", "interpolate")] == real_functional
