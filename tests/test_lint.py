"""Every lint rule fires on a network built to break it and stays quiet on its corrected twin."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.analysis import analyze
from cnnlab.analysis.lint import RULES
from cnnlab.models import create_model

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")


def _rules(model: nn.Module, shape: tuple[int, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for w in analyze(model, shape).warnings:
        found.setdefault(w.rule, []).append(w.layer)
    return found


def _seq(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


class Dense(nn.Module):
    """A fully convolutional net whose output map keeps the input size (a segmentation head)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


CASES = {
    # rule: (input, triggering net, clean twin, layer the warning names)
    "bias-before-bn": ((3, 8, 8), lambda: _seq(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)),
                       lambda: _seq(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)), "0"),
    "unread-border": ((1, 9, 9), lambda: _seq(nn.Conv2d(1, 2, 2, stride=3)),
                      lambda: _seq(nn.Conv2d(1, 2, 2, stride=3, padding=(1, 1))), "0"),
    "even-kernel-same": ((1, 9, 9), lambda: _seq(nn.Conv2d(1, 2, 4, padding="same")),
                         lambda: _seq(nn.Conv2d(1, 2, 3, padding="same")), "0"),
    "dilation-gridding": ((1, 32, 32),
                          lambda: _seq(nn.Conv2d(1, 1, 3, dilation=2), nn.ReLU(), nn.Conv2d(1, 1, 3, dilation=4)),
                          lambda: _seq(nn.Conv2d(1, 1, 3, dilation=2), nn.ReLU(), nn.Conv2d(1, 1, 3, dilation=3)),
                          "2"),
    "pool-kernel-lt-stride": ((1, 8, 8), lambda: _seq(nn.MaxPool2d(1, 2)), lambda: _seq(nn.MaxPool2d(2, 2)), "0"),
    "map-smaller-than-kernel": ((1, 4, 4), lambda: _seq(nn.MaxPool2d(2), nn.Conv2d(1, 1, 5, padding=2)),
                                lambda: _seq(nn.MaxPool2d(2), nn.Conv2d(1, 1, 1)), "1"),
    "fc-dominates-params": ((1, 8, 8), lambda: _seq(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 10)),
                            lambda: _seq(nn.Conv2d(1, 64, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2)),
                            "2"),
    "dropout-before-bn": ((2, 8, 8), lambda: _seq(nn.Dropout(0.5), nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)),
                          lambda: _seq(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.Dropout(0.5)), None),
    "channels-shrink-with-resolution": ((8, 8, 8), lambda: _seq(nn.Conv2d(8, 4, 3, stride=2, padding=1)),
                                        lambda: _seq(nn.Conv2d(8, 16, 3, stride=2, padding=1)), "0"),
    "rf-smaller-than-input": ((1, 16, 16), lambda: Dense(3), lambda: _seq(nn.Conv2d(1, 2, 3), nn.Flatten()),
                              "conv"),
    "rf-exceeds-input": ((1, 6, 6), lambda: _seq(*(nn.Conv2d(1, 1, 3, padding=1) for _ in range(7))),
                         lambda: _seq(*(nn.Conv2d(1, 1, 3, padding=1) for _ in range(2))), "5"),
}  # fmt: skip


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_triggers_and_clean_twin(rule: str) -> None:
    shape, bad, good, layer = CASES[rule]
    found = _rules(bad(), shape)
    assert rule in found, found
    if layer is not None:
        assert found[rule][0] == layer
    assert rule not in _rules(good(), shape)


def test_dropout_directly_before_bn() -> None:
    direct = _seq(nn.Conv2d(2, 2, 1), nn.Dropout(0.5), nn.BatchNorm2d(2))
    assert _rules(direct, (2, 8, 8))["dropout-before-bn"] == ["1"]


def test_every_rule_is_tested() -> None:
    assert set(RULES) - set(CASES) == {"rf-misaligned"}  # tested in test_analysis_counts.py


def test_dead_taps_are_an_error() -> None:
    net = _seq(nn.MaxPool2d(4), nn.Conv2d(1, 1, 5, padding=2))  # a 5x5 kernel over a 1x1 map
    levels = {w.level for w in analyze(net, (1, 4, 4)).warnings if w.rule == "map-smaller-than-kernel"}
    assert levels == {"error"}


def test_alexnet_conv1_unread_border() -> None:
    with torch.device("meta"):
        model = create_model("alexnet")
        original = create_model("alexnet_original")
    conv1 = model.features[0]
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((11, 11), (4, 4), (2, 2))  # torchvision's layout
    warnings = [w for w in analyze(model, (3, 224, 224)).warnings if w.rule == "unread-border"]
    assert warnings[0].layer == "features.0"
    assert "(224 + 2 + 2 - 10 - 1) mod 4 = 1" in warnings[0].message
    # the clean twin: the paper's 227x227 input with no padding, (227 - 10 - 1) mod 4 = 0
    assert "unread-border" not in _rules(original, (3, 227, 227))


def test_unread_real_pixels_is_a_warning() -> None:
    warning = analyze(_seq(nn.Conv2d(1, 1, 1, stride=2)), (1, 8, 8)).warnings[0]
    assert (warning.rule, warning.level) == ("unread-border", "warning")
    # a 1x1 window with stride 2 over 8 rows: row 7 at the end, and rows 1, 3, 5 between the windows
    assert warning.message.startswith("H: (n + pl + pr - d(k-1) - 1) mod s = (8 + 0 + 0 - 0 - 1) mod 2 = 1: ")
    assert warning.message.endswith("the last 1 input row(s) are never read; the 1-pixel window with stride 2 also "
                                    "skips 1 row(s) between windows")  # fmt: skip


class SplitDown(nn.Module):
    """Two strided branches of 4 channels each, concatenated back to 8 (an Inception-style reduction)."""

    def __init__(self, concat: bool) -> None:
        super().__init__()
        self.concat = concat
        self.a = nn.Conv2d(8, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 4, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.a(x)), self.b(x)
        return torch.cat([a, b], dim=1) if self.concat else a + b


def test_concat_branches_do_not_count_as_shrinking() -> None:
    assert "channels-shrink-with-resolution" not in _rules(SplitDown(concat=True), (8, 8, 8))
    assert _rules(SplitDown(concat=False), (8, 8, 8))["channels-shrink-with-resolution"] == ["a", "b"]


def test_linear_bias_before_batchnorm1d() -> None:
    bad = _seq(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8))
    good = _seq(nn.Flatten(), nn.Linear(16, 8, bias=False), nn.BatchNorm1d(8))
    assert _rules(bad, (1, 4, 4))["bias-before-bn"] == ["1"]
    assert "bias-before-bn" not in _rules(good, (1, 4, 4))


def test_a_field_too_long_to_follow_is_unknown_and_not_judged() -> None:
    # a stride of 10^5: the field's pattern repeats every 100,000 units (walking it took minutes at 10^8);
    # rf-smaller-than-input judged the last field known (the input's 1x1) as the output's
    model = nn.Sequential(nn.ConvTranspose2d(1, 1, 2, stride=100_000), nn.Conv2d(1, 1, 3))
    report = analyze(model, (1, 2, 2))
    assert [(w.rule, w.layer) for w in report.warnings] == [("rf-unknown", "0")]
    assert "repeats only every 100,000 units" in report.warnings[0].message
    assert report.layer("1").rf is None


def test_channels_shrink_needs_a_downsampling_stride() -> None:
    # Conv2d(16, 8, 3) without padding (16x16 -> 14x14) was told "features are lost twice"; it only
    # loses its border, it does not lower the resolution as a strided conv does.
    valid = _seq(nn.Conv2d(16, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    assert "channels-shrink-with-resolution" not in _rules(valid, (16, 16, 16))
    strided = _seq(nn.Conv2d(16, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=(1, 2)))
    assert _rules(strided, (16, 16, 16))["channels-shrink-with-resolution"] == ["2"]
