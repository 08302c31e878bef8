"""The receptive-field lines of ``explain rf`` fill in the numbers for every layer kind."""

from __future__ import annotations

from cnnlab.arith.explain import explain_rf


def test_upsampling_lines_fill_in_the_numbers_per_axis() -> None:
    # before: "up1: j = j_in/2, RF = (4, 4) (bilinear upsampling)", a tuple and no numbers for j or start
    d = explain_rf("conv f=3; up s=2 mode=bilinear; up s=2", "8,8,3")
    lines = [line for line in d["lines"] if line.startswith("up")]
    assert lines == [
        "up1: H, W: j = 1/2 = 0.5, RF = 4 (bilinear upsampling: each unit mixes the two nearest input units per "
        "axis), start = 0.75",
        "up2: H, W: j = 0.5/2 = 0.25, RF = 4 (nearest upsampling: each unit copies one input unit), start = 0.625",
    ]
    up = d["steps"][1]
    assert up["rf"] == {"size": [4, 4], "jump": [0.5, 0.5], "start": [0.75, 0.75]}
