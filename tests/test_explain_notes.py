"""`cnnlab explain` says why its answer differs from the seeds' formulas: the floor and the unread
border, the 'same' rule at stride > 1, dilation's effective kernel, which receptive field is larger,
and how far a claimed parameter total is off."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from cnnlab.arith import conv_out, unread_border
from cnnlab.arith.explain import compare_rf, explain_params, explain_rf, explain_shape
from cnnlab.arith.sizes import skipped_inputs
from cnnlab.cli.main import main
from cnnlab.reference.explain import explain_conv, explain_pool

SEED003_INPUT = "1 2 3 4 5; 6 7 8 2 3; 2 5 9 9 5; 4 8 8 2 1"
LENET = "conv f=5 c=8; pool f=2; conv f=5 c=16; pool f=2; fc 120; fc 84; fc 10"


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["explain", *argv]) == 0
    return capsys.readouterr().out


# --- 1. the floor, and the border no window reads ---------------------------------------------------


def test_shape_says_the_division_is_not_whole_and_only_padding_goes_unread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # seeds 000/003 write (W + 2P - F)/S + 1 without a floor: 112.5 here
    out = _out(capsys, "shape", "conv f=5 s=2 p=2 c=64", "--input", "224,224,3")
    assert "    H, W: floor((224 + 2*2 - 5)/2) + 1 = 112\n" in out
    assert (
        "    note: 223/2 = 111.5 is not whole, so the size is floored (112, not 112.5); the last 1 "
        "row/column of the padded input is never read by any window: it is padding, so no input value is "
        "lost\n"
    ) in out


def test_no_floor_note_when_the_division_is_whole() -> None:
    d = explain_shape("conv f=5 p=2; conv f=11 s=4", "227,227,3")
    assert all(s["size_notes"] == [] for s in d["steps"])
    assert not any("note:" in line for line in d["lines"])


def test_floor_note_counts_input_and_padding_per_axis() -> None:
    # 9 + 2*1 - 3 = 8 = 2*3 + 2: 2 rows unread, 1 of padding and 1 of input; W: 13 + 2 - 3 = 12 is whole
    d = explain_shape("conv f=3 s=3 p=1", "9,13,1")
    assert d["steps"][0]["size_notes"] == [
        "H: 8/3 = 2.667... is not whole, so the size is floored (3, not 3.667...); the last 2 rows of the "
        "padded input are never read by any window: 1 of padding and 1 input row whose values never reach "
        "the output"
    ]
    assert explain_shape("conv f=3 s=3 p=1", "9,9,1")["steps"][0]["size_notes"][0].endswith(
        "the last 2 rows/columns of the padded input are never read by any window: 1 of padding and 1 input "
        "row/column whose values never reach the output"
    )
    d = explain_shape("conv f=2 s=2", "7,8,1")
    assert d["steps"][0]["size_notes"] == [
        "H: 5/2 = 2.5 is not whole, so the size is floored (3, not 3.5); the last 1 row of the input is "
        "never read by any window: it holds input values that never reach the output"
    ]


def test_ceil_mode_pooling_has_no_floor_note() -> None:
    assert explain_shape("pool f=2 ceil=1", "5,5,1")["steps"][0]["size_notes"] == []
    assert explain_shape("pool f=2", "5,5,1")["steps"][0]["size_notes"][0].startswith("3/2 = 1.5 is not whole")


def test_conv_and_pool_traces_print_the_floor_note(capsys: pytest.CaptureFixture[str]) -> None:
    out = _out(capsys, "conv", "--input", SEED003_INPUT, "--kernel", "1 1; 1 1", "--stride", "2")
    note = (
        "  note: W: 3/2 = 1.5 is not whole, so the size is floored (2, not 2.5); the last 1 column of the "
        "input is never read by any window: it holds input values that never reach the output\n"
    )
    assert note in out
    assert out.index("W_out = ") < out.index(note) < out.index("Padded input")
    assert note in _out(capsys, "pool", "--input", SEED003_INPUT, "--kernel", "2")
    pool = explain_pool(SEED003_INPUT, 2)
    assert pool["notes"] == [note.strip().removeprefix("note: ")]
    assert explain_pool(SEED003_INPUT, 2, ceil_mode=True)["notes"] == []
    assert explain_conv(SEED003_INPUT, "1 1; 1 1")["notes"] == []


@pytest.mark.parametrize("seed", range(60))
def test_unread_border_matches_the_rows_torch_never_reads(seed: int) -> None:
    # With an all-ones kernel, no stride above it and no dilation, the windows leave no holes, so the
    # input rows whose gradient is zero are exactly the unread tail.
    rng = random.Random(seed)
    k = rng.randint(1, 5)
    n, s, p = rng.randint(k, 16), rng.randint(1, k), rng.randint(0, k // 2)
    x = torch.ones(1, 1, n, 1, requires_grad=True)
    F.conv2d(x, torch.ones(1, 1, k, 1), stride=(s, 1), padding=(p, 0)).sum().backward()
    assert x.grad is not None
    never_read = [i for i in range(n) if x.grad[0, 0, i, 0] == 0]
    unread, real = unread_border(n, k, s, p)[0]
    assert never_read == list(range(n - real, n)), (n, k, s, p)
    # with dilation too, the tail padding included is what the floor drops: the last window ends before it
    d = rng.randint(1, 3)
    if n + 2 * p >= d * (k - 1) + 1:
        unread = unread_border(n, k, s, p, d)[0][0]
        assert (conv_out(n, k, s, p, d)[0] - 1) * s + d * (k - 1) + 1 + unread == n + 2 * p
        assert 0 <= unread < s


# --- 2. 'same' with a stride -------------------------------------------------------------------------


def test_same_with_stride_states_ceil_and_the_padding(capsys: pytest.CaptureFixture[str]) -> None:
    # seed 003: SAME gives floor(x/stride), which would be 3; cnnlab (TensorFlow/Keras rule) gives 4
    out = _out(capsys, "shape", "conv f=3 s=2 p=same", "--input", "7,7,1")
    assert "->  4x4x1" in out
    assert (
        "    note: p=same: out = ceil(n/s) = ceil(7/2) = 4 (TensorFlow/Keras 'same'; PyTorch's padding='same' "
        "allows stride 1 only); this is ceil, not the floor(7/2) = 3 some texts give. Padding = "
        "max((out-1)*s + k_eff - n, 0) = max((4-1)*2 + 3 - 7, 0) = 2 in all: 1 top/left and 1 bottom/right\n"
    ) in out
    # the padding it names gives torch the same 4x4
    assert F.conv2d(torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 3, 3), stride=2, padding=1).shape[-2:] == (4, 4)


def test_same_notes_split_an_odd_total_and_skip_ceil_when_it_equals_floor() -> None:
    notes = explain_shape("conv f=4 s=2 p=same", "8,8,1")["steps"][0]["size_notes"]
    assert notes == [
        "p=same: out = ceil(n/s) = ceil(8/2) = 4 (TensorFlow/Keras 'same'; PyTorch's padding='same' allows "
        "stride 1 only). Padding = max((out-1)*s + k_eff - n, 0) = max((4-1)*2 + 4 - 8, 0) = 2 in all: 1 "
        "top/left and 1 bottom/right"
    ]
    notes = explain_shape("conv f=4 p=same", "7,9,1")["steps"][0]["size_notes"]
    assert notes == [
        "p=same at stride 1 keeps the size (TensorFlow/Keras 'same'; PyTorch's padding='same'): padding = "
        "k_eff - 1 = 3 in all: 1 top/left and 2 bottom/right (the extra one on the bottom/right, as "
        "TensorFlow and PyTorch do)"
    ]


def test_conv_trace_with_same_states_the_rule() -> None:
    d = explain_conv("1 2 3 4 5 6 7; 7 6 5 4 3 2 1; 1 1 1 1 1 1 1", "1 1 1; 1 1 1; 1 1 1", stride=2, padding="same")
    assert d["output_shape"] == [2, 4]
    assert any(n.startswith("W: p=same: out = ceil(n/s) = ceil(7/2) = 4") for n in d["notes"])
    assert any("ceil, not the floor(3/2) = 1" in n for n in d["notes"])


# --- 3. dilation -----------------------------------------------------------------------------------


DILATION = (
    "dilation 2: a 3x3 kernel covers 5x5 (k_eff = k + (k-1)(d-1), 3 + (3-1)*(2-1) = 5), with taps 2 apart "
    "(1 position skipped between neighbours). PyTorch's dilation=1 means no gaps; texts that count the gaps call "
    "this dilation 1"
)


def test_dilation_note_in_shape_rf_compare_and_conv(capsys: pytest.CaptureFixture[str]) -> None:
    # seed 003: "A dilation of 1 will apply a 3x3 kernel over a 5x5 region" counts gaps; PyTorch's is 2
    assert f"    note: {DILATION}\n" in _out(capsys, "shape", "conv f=3 d=2", "--input", "9,9,1")
    rf = _out(capsys, "rf", "conv f=3 d=2", "--input", "9,9,1")
    assert f"conv1: {DILATION}\n" in rf and "RF = 1 + (5-1)*1 = 5" in rf
    assert f"    conv1: {DILATION}\n" in _out(capsys, "rf", "--compare", "conv f=3 d=2", "conv f=5")
    trace = _out(capsys, "conv", "--input", SEED003_INPUT, "--kernel", "1 1; 1 1", "--dilation", "2")
    assert "  note: dilation 2: a 2x2 kernel covers 3x3 (k_eff = k + (k-1)(d-1), 2 + (2-1)*(2-1) = 3)" in trace
    # said once per layer, and not at all without dilation
    assert explain_rf("conv f=3 d=2; conv f=3", "9,9,1")["lines"].count(f"conv1: {DILATION}") == 1
    assert not any("dilation" in line for line in explain_shape("conv f=3 d=1", "9,9,1")["lines"])
    steps = explain_shape("conv f=3 d=2; conv f=3", "9,9,1")["steps"]
    assert [s["dilation_note"] for s in steps] == [DILATION, None]


def test_dilation_note_per_axis_and_1d() -> None:
    d = explain_shape("conv f=1x7 d=1x2", "20,20,1")
    assert d["steps"][0]["dilation_note"].startswith(
        "dilation 1x2: a 1x7 kernel covers 1x13 (k_eff = k + (k-1)(d-1), per axis), with taps 1x2 apart (0x1 "
        "positions skipped between neighbours)"
    )
    d = explain_shape("conv f=3 d=3", "20,1")
    assert d["steps"][0]["dilation_note"].startswith("dilation 3: a 3-tap kernel spans 7 positions")


# --- 4. which receptive field is larger -------------------------------------------------------------


def test_compare_says_which_rf_is_larger_and_that_pooling_enlarges_it(capsys: pytest.CaptureFixture[str]) -> None:
    # seed 002 says pooling decreases the receptive field; seed 000 (and the recurrence) say it increases
    out = _out(capsys, "rf", "--compare", "conv f=3; conv f=3", "conv f=3; pool f=2; conv f=3", "--input", "32,32,16")
    last = out.strip().splitlines()[-1]
    assert last.startswith("B's receptive field is larger (8x8 against 5x5); both use 4,608 weights.")
    assert "Pooling enlarges the receptive field, it never shrinks it: B's maxpool1 adds (k-1)*j" in last
    d = compare_rf("conv f=3; pool f=2; conv f=3", "conv f=3; conv f=3", input_shape="32,32,16")
    assert d["larger_rf"] == "A" and d["lines"][-1].startswith("A's receptive field is larger (8x8 against 5x5)")
    d = compare_rf("conv f=1x7", "conv f=7x1", channels=4)
    assert d["larger_rf"] == "neither"
    assert d["lines"][-1].startswith("A's receptive field (1x7) and B's (7x1) differ, each larger along some axis")
    d = compare_rf("conv f=3; conv f=3", "conv f=5", channels=8)
    assert d["larger_rf"] == "same" and "Pooling" not in d["lines"][-1]
    assert d["lines"][-1].startswith("A and B have the same receptive field; A uses 0.72x the weights of B")


def test_compare_json_names_the_larger_stack(capsys: pytest.CaptureFixture[str]) -> None:
    out = _out(capsys, "rf", "--compare", "conv f=3", "conv f=5", "--format", "json")
    d = json.loads(out)
    assert d["larger_rf"] == "B" and {"output", "input", "layout", "steps"} <= set(d)


# --- 5. parameter totals ----------------------------------------------------------------------------


def test_params_without_claims_prints_just_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    out = _out(capsys, "params", LENET, "--input", "32,32,3")
    # the totals end the output: no claim lines
    assert out.strip().splitlines()[-2:] == [
        "total parameters: 62,958",
        "total MACs: 849,320 multiply-adds per image (conv and fc layers; FLOPs = 2 x MACs = 1,698,640)",
    ]


def test_a_wrong_claimed_total_says_by_how_much_and_which_way() -> None:
    low = explain_params(LENET, "32,32,3", claimed_total=52794)
    assert low["problems"] == ["the claimed total 52,794 is 10,164 less than the layers' real total 62,958."]
    high = explain_params(LENET, "32,32,3", claimed_total=63000)
    assert high["problems"] == ["the claimed total 63,000 is 42 more than the layers' real total 62,958."]
    assert "WRONG: the claimed total 63,000 is 42 more than the layers' real total 62,958." in high["lines"]
    ok = explain_params(LENET, "32,32,3", claimed_total=62958)
    assert ok["problems"] == [] and "claimed total 62,958: correct" in ok["lines"]


def test_layer_language_help_states_the_same_and_dilation_rules(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["explain", "shape", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "p=same: output ceil(n/s) at any stride (TensorFlow's rule)" in text
    assert "d: PyTorch's dilation (d=1 no gaps, d=2: 3x3 covers 5x5)" in text


def test_dilation_note_counts_one_gap_of_d_minus_1_positions() -> None:
    # "with 2 gaps between taps" for d=3 read as two gaps; it is one gap of 2 positions
    note = explain_shape("conv f=3 d=3", "20,20,1")["steps"][0]["dilation_note"]
    assert "with taps 3 apart (2 positions skipped between neighbours)" in note


# --- gaps inside the map ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size", "k", "s", "d", "pad"),
    [("conv f=1 s=2 p=1", 4, 1, 2, 1, 1), ("pool f=2 s=4 p=1", 5, 2, 4, 1, 1), ("conv f=1 s=2", 5, 1, 2, 1, 0),
     ("conv f=3 d=3 s=2", 12, 3, 2, 3, 0), ("conv f=2 s=3", 9, 2, 3, 1, 0)],
)  # fmt: skip
def test_rows_no_tap_reads_are_counted_like_torch_and_never_called_lost_free(
    spec: str, size: int, k: int, s: int, d: int, pad: int
) -> None:
    # A 1x1 conv at stride 2 with padding 1 said "it is padding, so no input value is lost" while it
    # skipped input rows 0 and 2. The never-read rows are the ones with no gradient under an all-ones kernel.
    x = torch.ones(1, 1, size, size, requires_grad=True)
    if spec.startswith("pool"):
        F.avg_pool2d(x, k, s, pad, count_include_pad=True).sum().backward()
    else:
        F.conv2d(x, torch.ones(1, 1, k, k), stride=s, padding=pad, dilation=d).sum().backward()
    assert x.grad is not None
    unread = int((x.grad[0, 0].sum(dim=1) == 0).sum())  # rows with no gradient anywhere
    notes = " ".join(explain_shape(spec, f"{size},{size},1")["steps"][0]["size_notes"])
    assert unread > 0 and "no input value is lost" not in notes
    tail = unread_border(size, k, s, pad, d)[0][1]
    assert skipped_inputs(size, k, s, (pad, pad), d) == unread
    if unread - tail:
        assert f"{unread - tail} input row" in notes and "inside the map" in notes


def test_compare_credits_the_deeper_stack_and_notes_pooling_only_where_it_differs() -> None:
    # "A uses 1.39x the weights of B and adds a non-linearity between its layers" was said of A always,
    # here a single conv; the pooling note was added when both stacks had the same pool.
    last = compare_rf("conv f=5", "conv f=3; conv f=3", channels=8)["lines"][-1]
    assert last.endswith("B stacks 2 convolutions against 1, so with a ReLU after each it has more non-linearities.")
    last = compare_rf("conv f=3; pool f=2; conv f=3", "conv f=3; pool f=2", channels=8)["lines"][-1]
    assert last.startswith("A's receptive field is larger") and "Pooling" not in last
    last = compare_rf("conv f=3; conv f=3", "conv f=3; pool f=2", channels=8)["lines"][-1]
    assert "Pooling" not in last  # A is larger, and A has no pool
    last = compare_rf("conv f=3", "conv f=3; pool f=2", channels=8)["lines"][-1]
    assert last.endswith("multiplies the jump j by the stride.")  # nothing after the pool to reach further


def test_params_shows_each_layers_macs_against_torch_flop_counter() -> None:
    # a teacher's table had parameters only; the MACs were in the JSON alone
    import torch
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode

    net = nn.Sequential(nn.Conv2d(3, 8, 5), nn.MaxPool2d(2), nn.Conv2d(8, 16, 5, stride=2, groups=2), nn.Flatten(),
                        nn.Linear(16 * 5 * 5, 10))  # fmt: skip
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, 32, 32))
    d = explain_params("conv f=5 c=8; pool f=2 s=2; conv f=5 s=2 c=16 g=2; fc 10", "32,32,3")
    assert sum(step["macs"] for step in d["steps"]) * 2 == counter.get_total_flops()
    header, conv1 = d["lines"][1], d["lines"][2]
    assert header.split()[-1] == "MACs" and conv1.split()[-1] == f"{28 * 28 * 8 * 75:,}"
    assert d["lines"][-1].startswith(f"total MACs: {counter.get_total_flops() // 2:,} multiply-adds per image")
