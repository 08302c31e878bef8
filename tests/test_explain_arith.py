"""cnnlab.arith.explain: the seeds' tables, the layer language, and agreement with real torch layers."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch
from torch import nn

from cnnlab.arith.explain import (
    compare_rf,
    explain_params,
    explain_rf,
    explain_shape,
    parse_input,
    parse_spec,
)

SEED001_AS_PRINTED = (
    "CONV1: conv f=5 s=1 c=8 params=608; POOL1: pool f=2 s=2; CONV2: conv f=5 s=1 c=16 params=3216; "
    "POOL2: pool f=2 s=2; FC3: fc 120 params=48120; FC4: fc 10 params=850"
)
SEED001_WITH_84 = SEED001_AS_PRINTED.replace("FC4:", "F84: fc 84; FC4:")


def test_seed001_table_as_printed_is_caught() -> None:
    d = explain_params(SEED001_AS_PRINTED, "32,32,3", claimed_total=52794)
    assert [s["params"] for s in d["steps"]] == [608, 0, 3216, 0, 48120, 1210]
    assert [s["output"] for s in d["steps"]] == [
        [28, 28, 8],
        [14, 14, 8],
        [10, 10, 16],
        [5, 5, 16],
        [120],
        [10],
    ]
    assert [s["activations"] for s in d["steps"]] == [6272, 1568, 1600, 400, 120, 10]
    assert d["output"] == 53154 == 608 + 3216 + 48120 + 1210
    text = "\n".join(d["lines"])
    assert "total parameters: 53,154" in text
    # the table's total is 360 too low; "(claimed -360)" left the reader to work out which way
    assert "the claimed total 52,794 is 360 less than the layers' real total 53,154." in text
    assert "correct total" not in text
    assert "FC4 (fc 10 params=850): the table says 850 but the layer has 120*10 + 10 = 1,210" in text
    assert "850 = 84*10 + 10 is what an fc layer fed by 84 units has" in text
    assert "leaves out a layer of 84 units before FC4 (120*84 + 84 = 10,164 parameters)" in text
    assert "with it the network has 62,958 parameters" in text
    # every row is printed with its formula
    for row in (
        "(5*5*3 + 1)*8 = 608",
        "(5*5*8 + 1)*16 = 3,216",
        "400*120 + 120 = 48,120",
        "120*10 + 10 = 1,210",
    ):
        assert row in text


def test_seed001_with_the_84_unit_layer() -> None:
    d = explain_params(SEED001_WITH_84, "32,32,3", claimed_total=52794)
    assert d["output"] == 62958
    assert [s["params"] for s in d["steps"]][-2:] == [10164, 850]
    problems = " ".join(d["problems"])
    assert "claimed total 52,794 is 10,164 less than the layers' real total 62,958" in problems
    assert "the table leaves out layers" in problems
    assert "F84 (10,164)" in problems
    # a table that lists every row correctly passes
    ok = explain_params(
        SEED001_WITH_84.replace("F84: fc 84", "F84: fc 84 params=10164"), "32,32,3", claimed_total=62958
    )
    assert ok["problems"] == [] and "claimed total 62,958: correct" in ok["lines"]


def test_claimed_conv_without_bias_is_diagnosed() -> None:
    d = explain_params("conv f=3 c=10 params=270", "39,39,3")
    assert "270 is the count without the 10 biases" in d["problems"][0]


def test_alexnet_shapes_from_227() -> None:
    spec = (
        "conv f=11 s=4 c=96; pool f=3 s=2; conv f=5 p=2 c=256; pool f=3 s=2; conv f=3 p=1 c=384; "
        "conv f=3 p=1 c=384; conv f=3 p=1 c=256; pool f=3 s=2; fc 4096; fc 4096; fc 1000"
    )
    d = explain_shape(spec, "227x227x3")
    shapes = [s["output"] for s in d["steps"]]
    assert shapes == [
        [55, 55, 96],
        [27, 27, 96],
        [27, 27, 256],
        [13, 13, 256],
        [13, 13, 384],
        [13, 13, 384],
        [13, 13, 256],
        [6, 6, 256],
        [4096],
        [4096],
        [1000],
    ]
    assert "    H, W: floor((227 + 2*0 - 11)/4) + 1 = 55" in d["lines"]
    assert "    flatten 6x6x256 = 9216, 9216 -> 4096 units" in d["lines"]
    # the same network read as C,H,W
    chw = explain_shape(spec, "3,227,227", layout="chw")
    assert chw["steps"][0]["output"] == [96, 55, 55]


def test_vgg16_rf_table_from_seed000() -> None:
    spec = "; ".join(
        ["conv f=3 p=1"] * 2
        + ["pool f=2 s=2"]
        + ["conv f=3 p=1"] * 2
        + ["pool f=2 s=2"]
        + (["conv f=3 p=1"] * 3 + ["pool f=2 s=2"]) * 3
    )
    d = explain_rf(spec, "32,32,3")
    got = [(s["output"][0], s["rf"]["jump"][0], s["rf"]["size"][0]) for s in d["steps"]]
    assert [g[2] for g in got] == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    assert [g[1] for g in got][-1] == 32 and [g[0] for g in got][-1] == 1
    assert (
        "maxpool5: H, W: RF = 196 + (2-1)*16 = 212, j = 16*2 = 32, start = 7.5 + ((2-1)/2 - 0)*16 = 15.5"
        in (d["lines"])
    )


def test_compare_two_3x3_with_one_5x5() -> None:
    d = compare_rf("conv f=3; relu; conv f=3", "conv f=5", channels=32)
    a, b = d["output"]
    assert a["rf"]["size"] == b["rf"]["size"] == [5, 5]
    assert (a["c2_coefficient"], b["c2_coefficient"]) == (18, 25)
    assert a["weights"] == 2 * 9 * 32 * 32 and b["weights"] == 25 * 32 * 32
    assert d["lines"][0].startswith("both stacks run on input 224x224x32 (H,W,C) (the default size")
    assert "9C^2 + 9C^2 = 18C^2" in d["lines"][1]


def test_compare_runs_on_the_given_input() -> None:
    d = compare_rf("conv f=3 s=2 p=same", "conv f=3 s=2 p=same; fc 10", input_shape="3,9,9", layout="chw")
    assert d["input"] == [3, 9, 9] and d["lines"][0] == "both stacks run on input 3x9x9 (C,H,W)"
    assert d["output"][1]["weights"] == 27 * 3 + 5 * 5 * 3 * 10  # fc 10 after a 5x5x3 map
    with pytest.raises(ValueError, match=r"channels=5 disagrees with the input '9,9,3', which has 3 channels"):
        compare_rf("conv f=3", "conv f=5", channels=5, input_shape="9,9,3")
    with pytest.raises(ValueError, match=r"channels must be a positive whole number .* received channels=0"):
        compare_rf("conv f=3", "conv f=5", channels=0)


@pytest.mark.parametrize("call", [explain_shape, explain_rf, explain_params])
def test_a_spec_of_separators_is_empty_for_every_walk(call: Callable[[str, str], object]) -> None:
    with pytest.raises(ValueError, match=r"the layer spec holds no layer; received ' ; ; '"):
        call(" ; ; ", "8,8,1")
    with pytest.raises(ValueError, match=r"the layer spec holds no layer; received ';'"):
        compare_rf("conv f=3", ";")


def test_dilated_and_factorised_rf_through_the_language() -> None:
    assert explain_rf("conv f=3 d=1; conv f=3 d=2; conv f=3 d=3", "64,1")["output"]["size"] == [13]
    assert explain_rf("conv f=1x7 p=0x3; conv f=7x1 p=3x0", "17,17,8")["output"]["size"] == [7, 7]


@pytest.mark.parametrize(
    ("spec", "inp", "pattern"),
    [
        (
            "conv f=3 c=6 g=4",
            "8,8,4",
            "in_channels must be divisible by groups.*in_channels=4, groups=4|out_ch",
        ),
        ("conv f=7 p=1", "4,4,1", "conv output would be 0 along H: input 4, kernel 7, padding 1, stride 1"),
        ("conv f=3 s=0", "8,8,1", "stride must be positive"),
        ("wobble f=3", "8,8,1", "unknown layer kind 'wobble'"),
        ("conv k=3", "8,8,1", "does not take k=; a conv layer takes: bias, c, d, f, g, p, params, s"),
        ("conv f=three", "8,8,1", "f must be a whole number"),
        ("fc 10; conv f=3", "8,8,1", "needs a feature map"),
        ("conv f=1x7x7", "8,8,1", "has 3 values but the input has 2 spatial axes"),
        ("conv", "8,8,1", "needs f="),
        ("", "8,8,1", "the layer spec holds no layer"),
        (" ; ;\n", "8,8,1", "the layer spec holds no layer; received .* Give layers separated by"),
        ("conv f=3", "8,8,x", "input must be 2 to 4 positive whole numbers"),
        ("pool f=2 p=2", "8,8,1", "padding <= kernel // 2 = 1"),
    ],
)
def test_spec_errors(spec: str, inp: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        explain_shape(spec, inp)


def test_parse_helpers() -> None:
    assert parse_input("28,28,1") == ((28, 28), 1)
    assert parse_input("16x112x112x3") == ((16, 112, 112), 3)
    assert [
        layer.kind for layer in parse_spec("conv f=3\nmax f=2; avg f=2; deconv f=2 s=2; up; gap; bn")
    ] == [
        "conv",
        "maxpool",
        "avgpool",
        "convT",
        "up",
        "gap",
        "bn",
    ]


def _torch_layers(spec: list[tuple[str, dict[str, int]]], c: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for kind, o in spec:
        if kind == "conv":
            layers.append(nn.Conv2d(c, o["c"], o["f"], o["s"], o["p"], o["d"], groups=o["g"]))
            c = o["c"]
        elif kind == "pool":
            layers.append(nn.MaxPool2d(o["f"], o["s"], o["p"], ceil_mode=bool(o["ceil"])))
        elif kind == "convT":
            layers.append(nn.ConvTranspose2d(c, o["c"], o["f"], o["s"], o["p"], o["op"]))
            c = o["c"]
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(c))
        else:
            layers.append(nn.Sequential(nn.Flatten(), nn.LazyLinear(o["n"])))
    return layers


def _random_spec(rng: random.Random) -> list[tuple[str, dict[str, int]]]:
    spec: list[tuple[str, dict[str, int]]] = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice(["conv", "conv", "pool", "convT", "bn"])
        f = rng.randint(1, 4)
        g = rng.choice([1, 2])
        spec.append(
            (
                kind,
                {
                    "f": f,
                    "s": rng.randint(1, 2),
                    "p": rng.randint(0, f // 2),
                    "d": rng.randint(1, 2),
                    "c": 2 * rng.randint(1, 4),
                    "g": g,
                    "ceil": rng.randint(0, 1),
                    "op": 0,
                },
            )
        )
    spec.append(("fc", {"n": rng.randint(1, 12)}))
    return spec


def _spec_text(spec: list[tuple[str, dict[str, int]]]) -> str:
    keys = {"conv": "f s p d c g", "pool": "f s p ceil", "convT": "f s p op c", "bn": "", "fc": ""}
    parts = []
    for kind, o in spec:
        if kind == "fc":
            parts.append(f"fc {o['n']}")
        else:
            parts.append(" ".join([kind] + [f"{k}={o[k]}" for k in keys[kind].split()]))
    return "; ".join(parts)


@pytest.mark.filterwarnings("ignore:Lazy modules")
def test_random_stacks_match_torch_shapes_and_params() -> None:
    rng, checked = random.Random(5), 0
    while checked < 40:
        spec = _random_spec(rng)
        x = torch.zeros(1, 4, 20, 20)
        try:
            shapes, params = [], []
            for layer in _torch_layers(spec, 4):
                x = layer.eval()(x)  # eval: batch norm on a 1x1 map with batch 1 is fine
                shapes.append(list(x.shape[1:]))
                params.append(sum(p.numel() for p in layer.parameters()))
        except (RuntimeError, ValueError):
            with pytest.raises(ValueError):
                explain_params(_spec_text(spec), "4,20,20", layout="chw")
            continue
        d = explain_params(_spec_text(spec), "4,20,20", layout="chw")
        assert [s["output"] for s in d["steps"]] == shapes, _spec_text(spec)
        assert [s["params"] for s in d["steps"]] == params, _spec_text(spec)
        checked += 1


def test_unnamed_layers_are_named_after_the_word_typed() -> None:
    from cnnlab.arith._spec import parse_spec

    names = [layer.name for layer in parse_spec("conv f=1; relu; dropout; relu; pool f=2; softmax")]
    assert names == ["conv1", "relu1", "dropout1", "relu2", "maxpool1", "softmax1"]  # relu was "noop1"


def test_an_fc_after_flatten_reads_the_whole_map_as_without_it() -> None:
    # "conv f=3; flatten; fc 10" on 6x6 gave the fc RF 3 (the flatten dropped the map); without flatten, 6
    from cnnlab.arith.explain import explain_rf

    flat = explain_rf("conv f=3; flatten; relu; fc 10; fc 5", "6,6,1")["steps"]
    direct = explain_rf("conv f=3; fc 10", "6,6,1")["steps"]
    assert [s["rf"]["size"] for s in flat] == [[3, 3], [3, 3], [3, 3], [6, 6], [6, 6]]
    assert flat[3]["rf"] == direct[1]["rf"]


def test_explain_up_takes_bicubic_and_nearest_exact() -> None:
    # explain rf refused mode=bicubic although the analysis (inspect) follows it; autograd: 6 on 6x6
    from cnnlab.arith.explain import explain_rf

    steps = explain_rf("conv f=3; up s=2 mode=bicubic; gap", "6,6,1")["steps"]
    assert [s["rf"]["size"] for s in steps] == [[3, 3], [6, 6], [6, 6]]
    assert explain_rf("conv f=3; up s=2 mode=nearest-exact", "6,6,1")["steps"][1]["rf"]["size"] == [3, 3]
    with pytest.raises(ValueError, match="mode must be nearest, nearest-exact, bilinear or bicubic"):
        explain_rf("up s=2 mode=area", "6,6,1")
