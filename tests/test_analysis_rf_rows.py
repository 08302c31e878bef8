"""Receptive-field columns of `cnnlab inspect` rows: adaptive upsampling, whole-map layers, broadcast merges,
functional parameters.

References: autograd (float64, positive weights: the gradient of one output unit is non-zero exactly on
what reaches it), the textbook fields of the units that go into an adaptive pool, `cnnlab explain rf`
and the seeds' VGG table.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze
from cnnlab.arith import rf_conv, rf_input, rf_upsample
from cnnlab.arith.explain import explain_rf
from cnnlab.arith.receptive import rf_whole_map
from cnnlab.models import create_model


def _meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return create_model(name)


def sizes_after(pre: nn.Conv2d, post: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Largest (H, W) field of ``post``'s units: autograd back to ``pre``'s output, then the textbook
    span of every ``pre`` unit reached (unit u of a k/s/p conv sees pixels u*s - p .. u*s - p + k - 1,
    padding positions included: cnnlab never cuts a field to the image)."""
    pre, post = pre.double().eval(), post.double().eval()
    positive(pre, post)
    h = pre(torch.ones(1, *shape, dtype=torch.double)).detach().requires_grad_(True)
    return widest_reach(post(h), h, pre.kernel_size[0], pre.stride[0])


def _pad(k: int, p: int) -> nn.Conv2d:
    return nn.Conv2d(1, 1, k, padding=p)


# (conv before the pool, pool size, layers after it, input): the pool's input units see more than the
# input, so a field cut to the image is too small
ADAPTIVE_CASES: dict[str, tuple[nn.Conv2d, int, list[nn.Module], tuple[int, ...]]] = {
    "1->7": (_pad(3, 1), 7, [], (1, 1, 1)),
    "1->7-conv3p1": (_pad(3, 1), 7, [nn.Conv2d(1, 1, 3, padding=1)], (1, 1, 1)),
    "2->7": (_pad(5, 2), 7, [], (1, 2, 2)),
    "2->7-conv3": (_pad(5, 2), 7, [nn.Conv2d(1, 1, 3)], (1, 2, 2)),
    "3->2": (_pad(5, 2), 2, [], (1, 3, 3)),
    "3->2-conv3p1": (_pad(5, 2), 2, [nn.Conv2d(1, 1, 3, padding=1)], (1, 3, 3)),
    "11->4-conv3": (_pad(3, 1), 4, [nn.Conv2d(1, 1, 3)], (1, 11, 11)),
    "11->4-conv3p1": (_pad(5, 4), 4, [nn.Conv2d(1, 1, 3, padding=1)], (1, 11, 11)),
    "11->4-up2-conv3p1": (_pad(3, 1), 4, [nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3, padding=1)], (1, 11, 11)),
    "3->7-convT": (_pad(3, 1), 7, [nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1)], (1, 3, 3)),
    "5->3->2": (_pad(3, 1), 3, [nn.Conv2d(1, 1, 3, padding=1), nn.AdaptiveAvgPool2d(2)], (1, 5, 5)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ADAPTIVE_CASES))
def test_uneven_adaptive_pool_keeps_the_fields_of_its_input_units(case: str) -> None:
    # A 1 -> 7 pool copies one unit seven times: each copy sees that unit's whole field. Fields were
    # cut to the image after any uneven pool (1 on a 1x1 input for "1->7", 2 for "2->7").
    pre, m, after, shape = ADAPTIVE_CASES[case]
    post = nn.Sequential(nn.AdaptiveAvgPool2d(m), *after)
    rf = analyze(nn.Sequential(pre, post), shape).layers[-1].rf
    assert rf is not None and rf.size == sizes_after(pre, post, shape)


@pytest.mark.parametrize(
    ("size", "pooled", "conv"),
    [
        (7, 3, {"kernel_size": 2, "dilation": 2, "padding": 1, "stride": 2}),
        (11, 4, {"kernel_size": 3, "dilation": 2, "padding": 2}),
    ],
)
def test_reads_that_skip_the_first_real_unit_count_only_what_they_read(
    size: int, pooled: int, conv: dict[str, int]
) -> None:
    # unit 0 reads padding and unit 1 (not unit 0): the field was the hull up to the border (5, 11)
    pre, post = nn.Conv2d(1, 1, 1), nn.Sequential(nn.AdaptiveAvgPool2d(pooled), nn.Conv2d(1, 1, **conv))  # type: ignore[arg-type]
    rf = analyze(nn.Sequential(pre, post), (1, size, size)).layers[-1].rf
    assert rf is not None and rf.size == sizes_after(pre, post, (1, size, size))


def test_vgg16_on_32x32_keeps_212_through_its_7x7_pool_and_classifier() -> None:
    # AdaptiveAvgPool2d((7, 7)) on the 1x1 map of features.30 printed 32 (the image), and so did the head
    report = analyze(_meta_model("vgg16"), (3, 32, 32))
    sizes = [r.rf.size[0] for r in report.layers if r.rf is not None]
    assert sizes == sorted(sizes)  # a chain: the field never shrinks along it
    for name in ("features.30", "avgpool", "flatten", "classifier.0", "classifier.6"):
        row = report.layer(name)
        assert row.rf is not None and row.rf.size == row.rf_min == (212, 212), name
    assert report.final_spatial_rf is not None and report.final_spatial_rf.size == (212, 212)
    # the 49 outputs copy one unit: their centres coincide, 0 pixels apart
    assert report.layer("avgpool").rf.jump == (0.0, 0.0)  # type: ignore[union-attr]


# --- the jump after a layer that mixes the whole map -------------------------------------------------

ALEXNET = (
    "conv f=11 s=4 c=96; pool f=3 s=2; conv f=5 p=2 c=256; pool f=3 s=2; conv f=3 p=1 c=384; "
    "conv f=3 p=1 c=384; conv f=3 p=1 c=256; pool f=3 s=2"
)
VGG16 = "; ".join(
    ["conv f=3 p=1 c=64"] * 2 + ["pool f=2"] + ["conv f=3 p=1 c=128"] * 2 + ["pool f=2"]
    + ["conv f=3 p=1 c=256"] * 3 + ["pool f=2"] + ["conv f=3 p=1 c=512"] * 3 + ["pool f=2"]
    + ["conv f=3 p=1 c=512"] * 3 + ["pool f=2"]
)  # fmt: skip


@pytest.mark.parametrize(
    ("model", "size", "spec", "fc"),
    [
        ("alexnet_original", 227, ALEXNET + "; fc 4096", "classifier.0"),
        ("vgg16", 224, VGG16 + "; fc 4096", "classifier.0"),
        ("vgg16_cifar", 32, VGG16 + "; gap; fc 10", "classifier.0"),
    ],
)
def test_fc_rows_show_the_jump_explain_rf_shows(model: str, size: int, spec: str, fc: str) -> None:
    # inspect printed 192 (alexnet_original) and 224 (vgg16) for FC6, explain rf 32: an fc reads the
    # whole map as one window that would slide by one unit, so it keeps the jump it reads (seed rows 19-20)
    row = analyze(_meta_model(model), (3, size, size)).layer(fc)
    explained = explain_rf(spec, f"{size},{size},3")["output"]
    assert row.rf is not None
    assert (list(row.rf.size), list(row.rf.jump), list(row.rf.start)) == (
        explained["size"], explained["jump"], explained["start"]
    )  # fmt: skip
    assert row.rf.jump == (32.0, 32.0)


def test_global_pooling_keeps_the_jump_as_explain_rf_gap_does() -> None:
    # AdaptiveAvgPool2d(1) on a 7x7 map printed jump 14 (7 * 2) and a padded conv after it saw 43
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 4, 3, padding=1))
    report = analyze(net, (3, 15, 15))
    steps = explain_rf("conv f=3 s=2 c=4; gap; conv f=3 p=1 c=4", "15,15,3")["steps"]
    for row, step in zip(report.layers[1:], steps):
        assert row.rf is not None
        assert (list(row.rf.size), list(row.rf.jump), list(row.rf.start)) == (
            step["rf"]["size"], step["rf"]["jump"], step["rf"]["start"]
        ), row.name  # fmt: skip


# --- parameters used by functional code ---------------------------------------------------------------


def test_lenet5_subsampling_coefficients_sit_on_rows_with_a_field() -> None:
    # `x * self.weight.view(1, -1, 1, 1) + self.bias.view(...)`: the coefficients were on the `view`
    # rows, which see no pixel (rf '-'); they belong to the mul and add that apply them to the map
    report = analyze(create_model("lenet5_classic"), (1, 32, 32))
    assert report.totals.params == sum(r.params for r in report.layers) == 60_850
    assert all(r.rf is not None for r in report.layers if r.params)
    for module, channels, size in (("features.2", 6, 6), ("features.6", 16, 16)):
        scale, shift = report.layer(f"{module}.mul_1"), report.layer(f"{module}.add")
        assert (scale.params, shift.params) == (channels, channels)
        assert scale.rf is not None and scale.rf.size == (size, size)
        assert report.layer(f"{module}.view").params == report.layer(f"{module}.view_1").params == 0


class _Unapplied(nn.Module):
    """A parameter read in forward() but never applied to the data (and one shared by two muls)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.scale = nn.Parameter(torch.ones(2))
        self.spare = nn.Parameter(torch.ones(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.spare.view(1, -1)  # read, result unused
        s = self.scale.view(1, -1, 1, 1)
        out: torch.Tensor = self.conv(x) * s * s
        return out


def test_a_parameter_counts_once_at_its_first_use_on_the_data() -> None:
    report = analyze(_Unapplied(), (1, 8, 8))
    assert [(r.name, r.params) for r in report.layers if r.params] == [("view", 5), ("conv", 20), ("mul", 2)]
    assert report.totals.params == 27


# --- one unit over the whole map after upsampling; merges with a broadcast unit ------------------------


class _Whole(nn.Module):
    """Upsampling, then one unit over the whole map: global pooling, a mean or an fc."""

    def __init__(self, up: nn.Module, head: str) -> None:
        super().__init__()
        self.up, self.head = up, head
        self.whole = nn.AdaptiveAvgPool2d(1) if head == "gap" else nn.Linear(64, 1) if head == "fc" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.head == "mean":
            out: torch.Tensor = x.mean((2, 3), keepdim=True)
        elif self.head == "fc":
            out = self.whole(x.flatten(1)).view(-1, 1, 1, 1)  # (B, 1*8*8) -> (B, 1, 1, 1)
        else:
            out = self.whole(x)
        return out


@pytest.mark.parametrize("head", ["gap", "mean", "fc"])
@pytest.mark.parametrize("up", ["nearest", "convT"])
def test_one_unit_over_an_upsampled_map_sees_only_the_units_on_it(up: str, head: str) -> None:
    # global pooling after an x2 upsample printed 7: the widest phase of a window over 8 half-pixel units,
    # which also counts a unit off the map; the one unit on it sees units 0..7, pixels -1..4 (autograd 6)
    pre = _pad(3, 1)
    layer = nn.Upsample(scale_factor=2) if up == "nearest" else nn.ConvTranspose2d(1, 1, 2, stride=2)
    post = _Whole(layer, head)
    rf = analyze(nn.Sequential(pre, post), (1, 4, 4)).layers[-1].rf
    assert rf is not None and rf.size == sizes_after(pre, post, (1, 4, 4)) == (6, 6)


def test_explain_rf_gap_after_upsampling_agrees_with_inspect() -> None:
    assert rf_whole_map(rf_upsample(rf_conv(rf_input(2), 3, p=1), 2), 8).size == (6, 6)
    rows = analyze(nn.Sequential(_pad(3, 1), nn.Upsample(scale_factor=2), nn.AdaptiveAvgPool2d(1)), (1, 4, 4))
    explained = explain_rf("conv f=3 p=1; up s=2; gap", "4,4,1")["output"]
    assert explained["size"] == [6, 6]  # explain's gap counted the widest phase (7)
    assert rows.layers[-1].rf is not None and list(rows.layers[-1].rf.size) == explained["size"]


Pooled = int | tuple[int | None, int | None]  # AdaptiveAvgPool2d's output size
GATES: list[tuple[Pooled, str]] = [(1, "mul"), (1, "add"), ((1, None), "add"), ((None, 1), "mul")]


class _Gate(nn.Module):
    """``x op pool(x)``: an SE/attention gate whose pooled branch broadcasts over the map."""

    def __init__(self, size: Pooled, op: str) -> None:
        super().__init__()
        self.pool, self.op = nn.AdaptiveAvgPool2d(size), op  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.pool(x)
        return x * torch.sigmoid(g) if self.op == "mul" else x + g


@pytest.mark.parametrize(("size", "op"), GATES)
def test_a_broadcast_branch_after_an_uneven_pool_counts(size: Pooled, op: str) -> None:
    # after 11 -> 4 the merge kept only inputs with 4 units along an axis, so the pooled gate (1 unit,
    # broadcast to all 4) was dropped: 6 where every unit sees the whole map (13)
    pre = _pad(3, 1)
    post = nn.Sequential(nn.AdaptiveAvgPool2d(4), _Gate(size, op))
    report = analyze(nn.Sequential(pre, post), (1, 11, 11))
    rf = report.layers[-1].rf
    whole = tuple(13 if v == 1 else 6 for v in ((size, size) if isinstance(size, int) else size))
    assert rf is not None and rf.size == sizes_after(pre, post, (1, 11, 11)) == whole
    assert report.layers[-1].rf_min == (6, 6)  # the path through x alone


@pytest.mark.parametrize("pooled", [4, None])
@pytest.mark.parametrize(("size", "op"), GATES)
def test_a_window_after_a_broadcast_merge(size: Pooled, op: str, pooled: int | None) -> None:
    # every unit of x * pool(x) sees the same gate; on the infinite grid the gate kept the pattern of a
    # window sliding over the map, so a 3x3 conv after the SE block saw one pixel more on each side (14 on
    # 12x12, autograd 12 + 2 for the padded first conv)
    pre = _pad(3, 1)
    post = nn.Sequential(nn.AdaptiveAvgPool2d(pooled) if pooled else nn.Identity(), _Gate(size, op), _pad(3, 1))
    rf = analyze(nn.Sequential(pre, post), (1, 12, 12)).layers[-1].rf
    assert rf is not None and rf.size == sizes_after(pre, post, (1, 12, 12))


class _TwoReads(nn.Module):
    """A 1 -> 7 pool along H (jump 0), then two convs of different strides added (the review's twomodel)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((7, 4))
        self.a, self.b = nn.Conv2d(1, 1, 1, stride=(1, 2)), nn.Conv2d(1, 1, (1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        out: torch.Tensor = self.a(x) + self.b(x)
        return out


@pytest.mark.parametrize("shape", [(1, 1, 8), (1, 2, 8), (1, 5, 8)])
def test_a_merge_after_a_pool_that_copies_one_row(shape: tuple[int, ...]) -> None:
    # analyze raised 'an RF needs jump > 0 and size >= 0; received size=3, jump=0.0' on 1x8 (b7cb98a)
    pre, post = _pad(3, 1), _TwoReads()
    report = analyze(nn.Sequential(pre, post), shape)
    rf = report.layers[-1].rf
    assert rf is not None and rf.size == sizes_after(pre, post, shape)
