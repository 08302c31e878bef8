"""Constants shaped like the map and ops that reorder its units.

``zeros_like(y)`` (and ``new_zeros``, ``ones_like``, ``full_like``, ...) reads only ``y``'s shape: a cat with
it pads ``y`` with values that see no pixel (autograd). ``flip``/``roll``/``rot90`` of a spatial axis move the
units along it, which the grid does not follow: the field after them is reported unknown, naming the op.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze

Op = Callable[[torch.Tensor], torch.Tensor]


class _Then(nn.Module):
    """A 3x3 conv, ``op``, a 3x3 conv."""

    def __init__(self, op: Op) -> None:
        super().__init__()
        self.a, self.post, self.op = nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3), op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.post(self.op(self.a(x)))
        return out


CONSTANTS: dict[str, Op] = {
    # was 5x9 on 9x9: the zeros were followed as a piece of their own, half a map away
    "cat zeros_like": lambda y: torch.cat([y, torch.zeros_like(y[..., :2])], 3),
    "cat new_zeros": lambda y: torch.cat([y, y.new_zeros(1, 2, y.shape[2], 2)], 3),  # was rf unknown
    "cat full_like": lambda y: torch.cat([torch.full_like(y[..., :3, :], 0.5), y], 2),
    "times ones_like": lambda y: y * torch.ones_like(y),
}

REORDERS: dict[str, Op] = {
    "cat flip": lambda y: torch.cat([y, y.flip(3)], 3),  # was 5x9, autograd 5x5
    "add flip": lambda y: y + y.flip(3),  # was 5x5, autograd 5x9
    "add roll": lambda y: y + torch.roll(y, 2, 2),
    "add rot90": lambda y: y + torch.rot90(y, 1, (2, 3)),
}


@pytest.mark.parametrize("case", sorted(CONSTANTS))
def test_constants_see_no_pixel(case: str) -> None:
    model = _Then(CONSTANTS[case]).double()
    report = analyze(model, (2, 9, 9))
    assert not [w for w in report.warnings if w.rule == "rf-unknown"]
    rf = report.layers[-1].rf
    positive(model)
    x = torch.rand(1, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    assert rf is not None and rf.size == widest_reach(model(x), x)


@pytest.mark.parametrize("case", sorted(REORDERS))
def test_reordered_spatial_axes_are_not_followed(case: str) -> None:
    report = analyze(_Then(REORDERS[case]), (2, 9, 9))
    assert report.layers[-1].rf is None
    (note,) = [w for w in report.warnings if w.rule == "rf-unknown"]
    assert note.level == "info" and case.split()[1] in note.message


def test_a_flip_of_the_channels_keeps_the_field() -> None:
    report = analyze(_Then(lambda y: y + torch.flip(y, [1])), (2, 9, 9))
    rf = report.layers[-1].rf
    assert rf is not None and rf.size == (5, 5)


class _Interleave(nn.Module):
    """``stack([a, b], -1).flatten(-2)``: the columns of two maps interleaved along one axis, then a 3x3 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.post = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.post(torch.stack([self.a(x), self.b(x)], dim=-1).flatten(-2))
        return out


def test_a_window_over_interleaved_axes_says_why_it_is_not_followed() -> None:
    # it said "cnnlab does not know how Conv2d maps the spatial axes", which blamed the conv
    report = analyze(_Interleave(), (1, 8, 8))
    [unknown] = [w for w in report.warnings if w.rule == "rf-unknown"]
    assert unknown.layer == "post" and "slides over tensor axis 3 of its [1, 2, 8, 16] input, which holds a " \
        "spatial axis mixed with another" in unknown.message  # fmt: skip
    assert report.layer("flatten").rf is not None and report.layer("post").rf is None
