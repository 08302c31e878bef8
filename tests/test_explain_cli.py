"""`cnnlab explain ...` in-process: acceptance outputs, agreement with torch, and error wording."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.cli.main import main

SEED003_INPUT = "1 2 3 4 5; 6 7 8 2 3; 2 5 9 9 5; 4 8 8 2 1"
SEED003_KERNEL = "1 1 1; 2 1 2; 3 2 1"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = _run(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def _torch(x: str, w: str, **kw: object) -> list:
    xt = torch.tensor(np.array([[float(v) for v in r.split()] for r in x.split(";")]))[None, None]
    wt = torch.tensor(np.array([[float(v) for v in r.split()] for r in w.split(";")]))[None, None]
    return F.conv2d(xt, wt, **kw)[0, 0].tolist()


def test_acceptance_conv_json_first_value_66(capsys: pytest.CaptureFixture[str]) -> None:
    d = _json(capsys, "conv", "--input", SEED003_INPUT, "--kernel", SEED003_KERNEL)
    assert d["output"] == [[66, 77, 86], [84, 96, 79]] == _torch(SEED003_INPUT, SEED003_KERNEL)
    assert d["steps"][0]["sum"] == 66
    assert "lines" not in d


def test_conv_text_shows_windows_products_and_sum(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "conv", "--input", SEED003_INPUT, "--kernel", SEED003_KERNEL)
    assert code == 0
    assert "sum = 1 + 2 + 3 + 12 + 7 + 16 + 6 + 10 + 9 = 66" in out
    assert "floor((4 + 2*0 - 1*(3-1) - 1) / 1) + 1 = 2" in out


@pytest.mark.parametrize(
    "opts",
    [
        {"stride": 2, "padding": 1},
        {"dilation": 2, "padding": 2},
        {"stride": (1, 2), "padding": (0, 1)},
    ],
)
def test_conv_options_match_torch(capsys: pytest.CaptureFixture[str], opts: dict) -> None:
    argv = ["conv", "--input", SEED003_INPUT, "--kernel", SEED003_KERNEL]
    for key, value in opts.items():
        argv += [f"--{key}", ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    assert _json(capsys, *argv)["output"] == _torch(SEED003_INPUT, SEED003_KERNEL, **opts)


def test_flip_is_textbook_convolution(capsys: pytest.CaptureFixture[str]) -> None:
    flipped = "1 2 3; 2 1 2; 1 1 1"  # the seed kernel rotated by 180 degrees
    d = _json(capsys, "conv", "--input", SEED003_INPUT, "--kernel", SEED003_KERNEL, "--flip")
    assert d["output"] == _torch(SEED003_INPUT, flipped)
    assert d["output"] != _torch(SEED003_INPUT, SEED003_KERNEL)


def test_seed_5x5_kernel_example(capsys: pytest.CaptureFixture[str]) -> None:
    image = "1 1 1 0 0; 0 1 1 1 0; 0 0 1 1 1; 0 0 1 1 0; 0 1 1 0 0"
    kernel = "1 0 1; 0 1 0; 1 0 1"
    assert _json(capsys, "conv", "--input", image, "--kernel", kernel)["output"] == [
        [4, 3, 4],
        [2, 4, 3],
        [2, 3, 4],
    ]


def test_grouped_conv_matches_torch(capsys: pytest.CaptureFixture[str]) -> None:
    x = "1 2; 3 4 | 0 1; 1 0 | 2 2; 1 1 | 5 0; 0 5"
    w = "1 | 2 || -1 | 1"  # 2 filters of 2 channels each -> groups=2 over 4 channels
    d = _json(capsys, "conv", "--input", x, "--kernel", w, "--groups", "2")
    xt = torch.tensor([[[1.0, 2], [3, 4]], [[0, 1], [1, 0]], [[2, 2], [1, 1]], [[5, 0], [0, 5]]])[None]
    wt = torch.tensor([[1.0, 2], [-1, 1]]).view(2, 2, 1, 1)
    assert d["output"] == F.conv2d(xt, wt, groups=2)[0].tolist()


def _matrix_text(a: torch.Tensor) -> str:
    # (C, H, W) -> "1 2; 3 4 | 5 6; 7 8"
    return " | ".join("; ".join(" ".join(str(int(v)) for v in row) for row in ch) for ch in a.tolist())


@pytest.mark.parametrize("seed", range(12))
def test_grouped_conv_with_bias_matches_torch(capsys: pytest.CaptureFixture[str], seed: int) -> None:
    # --groups used to drop --bias: every group ran with bias 0
    gen = torch.Generator().manual_seed(seed)
    g = [2, 3][seed % 2]
    cin, cout = g * (1 + seed % 3), g * (1 + (seed // 3) % 2)
    x = torch.randint(-3, 4, (1, cin, 4, 5), generator=gen).double()
    w = torch.randint(-2, 3, (cout, cin // g, 2, 3), generator=gen).double()
    b = torch.randint(-50, 50, (cout,), generator=gen).double()
    kernel = " || ".join(_matrix_text(w[o]) for o in range(cout))
    bias = ",".join(str(int(v)) for v in b)
    d = _json(capsys, "conv", f"--input={_matrix_text(x[0])}", f"--kernel={kernel}", "--groups", str(g),
              f"--bias={bias}", "--padding", "1", "--stride", "1,2")  # fmt: skip
    expected = F.conv2d(x, w, b, padding=1, stride=(1, 2), groups=g)[0]
    assert d["output"] == expected.tolist()
    assert d["output_shape"] == list(expected.shape)
    assert d["settings"]["groups"] == g and d["settings"]["bias"] == b.tolist()


def test_grouped_json_has_the_keys_of_the_plain_conv(capsys: pytest.CaptureFixture[str]) -> None:
    x = "1 2; 3 4 | 5 6; 7 8"
    plain = _json(capsys, "conv", "--input", x, "--kernel", "1 | 1 || 10 | 10")
    grouped = _json(capsys, "conv", "--input", x, "--kernel", "1 || 10", "--groups", "2", "--bias", "100,200")
    assert set(grouped) == set(plain) >= {"output", "output_shape", "settings", "kernel", "formula", "operation"}
    assert grouped["output"] == [[[101, 102], [103, 104]], [[250, 260], [270, 280]]]
    assert {s["group"] for s in grouped["steps"]} == {0, 1} and "group" not in plain["steps"][0]
    code, out, _ = _run(capsys, "conv", "--input", x, "--kernel", "1 || 10", "--groups", "2", "--bias", "100,200")
    assert code == 0
    assert "filter 1 (group 1) output[0, 0]" in out and "+ bias 200 = 250" in out


def test_pool_seed_example(capsys: pytest.CaptureFixture[str]) -> None:
    x = "3 3 2 1 0; 0 0 1 3 1; 3 1 2 2 3; 2 0 0 2 2; 2 0 0 0 1"
    d = _json(capsys, "pool", "--input", x, "--kernel", "3", "--stride", "1")
    assert d["output"] == [[3, 3, 3], [3, 3, 3], [3, 2, 3]]
    avg = _json(capsys, "pool", "--input", x, "--kernel", "2", "--mode", "avg", "--ceil-mode")
    xt = torch.tensor([[float(v) for v in r.split()] for r in x.split(";")])[None, None]
    assert avg["output"] == F.avg_pool2d(xt, 2, ceil_mode=True)[0, 0].tolist()


def test_transposed_matches_torch(capsys: pytest.CaptureFixture[str]) -> None:
    d = _json(
        capsys,
        "transposed",
        "--input",
        "1 2; 3 4",
        "--kernel",
        "1 2 1; 0 1 0; 2 0 1",
        "--stride",
        "2",
        "--padding",
        "1",
        "--output-padding",
        "1",
    )
    xt = torch.tensor([[1.0, 2], [3, 4]])[None, None]
    wt = torch.tensor([[1.0, 2, 1], [0, 1, 0], [2, 0, 1]])[None, None]
    assert d["output"] == F.conv_transpose2d(xt, wt, stride=2, padding=1, output_padding=1)[0, 0].tolist()


def test_params_seed001_as_printed(capsys: pytest.CaptureFixture[str]) -> None:
    spec = (
        "CONV1: conv f=5 c=8 params=608; POOL1: pool f=2 s=2; CONV2: conv f=5 c=16 params=3216; "
        "POOL2: pool f=2 s=2; FC3: fc 120 params=48120; FC4: fc 10 params=850"
    )
    code, out, _ = _run(capsys, "params", spec, "--input", "32,32,3", "--claimed-total", "52,794")
    assert code == 0
    for name in ("CONV1", "POOL1", "CONV2", "POOL2", "FC3", "FC4"):
        assert f"\n{name} " in out
    assert "total parameters: 53,154" in out
    assert "WRONG: the claimed total 52,794 is 360 less than the layers' real total 53,154." in out
    assert "The table leaves out a layer of 84 units before FC4" in out
    with_84 = spec.replace("FC4:", "F6: fc 84; FC4:")
    d = _json(capsys, "params", with_84, "--input", "32,32,3", "--claimed-total", "52794")
    assert d["output"] == 62958 and d["claimed_total"] == 52794 and d["problems"]


def test_shape_and_rf_and_compare(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    spec_file = tmp_path / "net.txt"
    spec_file.write_text("conv f=11 s=4 c=96\npool f=3 s=2\n")
    d = _json(capsys, "shape", f"@{spec_file}", "--input", "3,227,227", "--chw")
    assert d["output"] == [96, 27, 27]
    rf = _json(capsys, "rf", "conv f=3 d=1; conv f=3 d=2; conv f=3 d=3", "--input", "100,1")
    assert rf["output"]["size"] == [13]
    code, out, _ = _run(capsys, "rf", "--compare", "conv f=3; relu; conv f=3", "conv f=5", "--channels", "16")
    assert code == 0 and "9C^2 + 9C^2 = 18C^2" in out and "25C^2" in out


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["conv", "--input", "1 2 3; 4 5", "--kernel", "1"],
            r"error: matrix text is not rectangular: row 2 has 2",
        ),
        (
            ["conv", "--input", SEED003_INPUT, "--kernel", SEED003_KERNEL, "--stride", "-1"],
            r"error: stride must be >= 1 along each axis; received stride=-1",
        ),
        (
            ["conv", "--input", "1 2; 3 4", "--kernel", SEED003_KERNEL],
            r"error: conv output would be 0 along H: input 2, kernel 3, padding 0, stride 1 need input \+",
        ),
        (
            ["conv", "--input", "1 2; 3 4 | 1 1; 1 1 | 0 0; 0 0", "--kernel", "1 | 1", "--groups", "2"],
            r"error: in_channels must be divisible by groups .* received in_channels=3, groups=2",
        ),
        (
            ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--padding", "two"],
            r"error: --padding must be an int, H,W, top,bottom,left,right, same or valid; received --padding 'two'",
        ),
        (
            ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--bias", "one"],
            r"error: --bias must be one number",
        ),
        (
            ["pool", "--input", "1 2; 3 4", "--kernel", "2", "--padding", "2"],
            r"error: pooling padding must be",
        ),
        (
            ["transposed", "--input", "1 2; 3 4", "--kernel", "1 1; 1 1", "--output-padding", "1"],
            r"error: output_padding must be >= 0 and smaller than either stride or dilation",
        ),
        (
            ["params", "conv f=3 c=6 g=4", "--input", "8,8,4"],
            r"error: layer 1 \(conv1: 'conv f=3 c=6 g=4'\): out_channels must be divisible by groups .* "
            r"received out_channels=6, groups=4",
        ),
        (  # stride 0 used to be taken as the default 1 (`stride or 1`) and explained as stride 1
            ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--stride", "0"],
            r"error: stride must be >= 1 along each axis; received stride=0",
        ),
        (
            ["transposed", "--input", "1 2; 3 4", "--kernel", "1", "--stride", "0"],
            r"error: stride must be >= 1 along each axis; received stride=0",
        ),
        (["shape", "conv f=3"], r"error: explain shape needs --input"),
        (["params", "--input", "8,8,1"], r"error: explain params needs a layer spec"),
        (
            ["conv", "--input", "@/nonexistent/m.txt", "--kernel", "1"],
            r"error: --input @/nonexistent/m.txt: the file '/nonexistent/m.txt' does not exist",
        ),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert "\n\n" not in err.strip()  # one paragraph
    assert __import__("re").search(pattern, " ".join(err.split())), err


def test_explain_parser_imports_neither_torch_nor_numpy() -> None:
    # `cnnlab --help` builds every command's parser; this one must stay light
    code = (
        "import argparse, sys, cnnlab.cli.cmd_explain as c\n"
        "p = argparse.ArgumentParser(); c.add_arguments(p); p.format_help()\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_compare_runs_on_input_or_a_stated_default(capsys: pytest.CaptureFixture[str]) -> None:
    deep = "; ".join(["conv f=3"] * 16)  # RF 33: failed on the hidden 32x32 input
    code, out, _ = _run(capsys, "rf", "--compare", deep, "conv f=33")
    assert code == 0
    assert out.startswith("both stacks run on input 224x224x64 (H,W,C) (the default size; give --input")
    d = _json(capsys, "rf", "--compare", "conv f=3; conv f=3", "conv f=5", "--input", "8,40,40", "--chw")
    assert d["input"] == [8, 40, 40] and d["layout"] == "chw"
    assert [o["weights"] for o in d["output"]] == [2 * 9 * 8 * 8, 25 * 8 * 8]  # C comes from --input
    code, out, _ = _run(capsys, "rf", "--compare", "conv f=3", "conv f=5", "--channels", "16")
    assert "input 224x224x16 (H,W,C)" in out and "(C=16)" in out


def test_compare_with_a_weightless_stack_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    # the ratio was a division by zero printed as "A uses infx the weights of B"
    code, out, _ = _run(capsys, "rf", "--compare", "conv f=3; conv f=3", "pool f=5 s=1")
    assert code == 0 and "inf" not in out
    assert out.strip().endswith("A and B have the same receptive field; B has no weights (A has 73,728).")
    code, out, _ = _run(capsys, "rf", "--compare", "pool f=3 s=1", "pool f=3 s=1")
    assert "neither A nor B has weights" in out


def test_negative_values_give_the_numbers_of_torch(capsys: pytest.CaptureFixture[str]) -> None:
    d = _json(capsys, "conv", "--input", "-1,2;3,-4", "--kernel", "-1", "--bias", "-1", "--groups", "1")
    assert d["output"] == [[v - 1 for v in row] for row in _torch("-1 2; 3 -4", "-1")] == [[0, -3], [-4, 3]]
    assert d["settings"]["bias"] == [-1]
    two = _json(capsys, "conv", "--input", "1 2; 3 4", "--kernel", "1 | -1", "--bias", "-1,2")
    xt = torch.tensor([[1.0, 2], [3, 4]])[None, None]
    expected = F.conv2d(xt, torch.tensor([1.0, -1]).view(2, 1, 1, 1), torch.tensor([-1.0, 2]))[0]
    assert two["output"] == expected.tolist()


def test_help_says_what_the_commands_do(capsys: pytest.CaptureFixture[str]) -> None:
    def help_of(*argv: str) -> str:
        with pytest.raises(SystemExit):
            main(["explain", *argv, "--help"])
        return " ".join(capsys.readouterr().out.split())

    assert "--stride STRIDE int or H,W (default: the window size, as in PyTorch)" in help_of("pool")
    assert _json(capsys, "pool", "--input", "1 2 3 4; 5 6 7 8", "--kernel", "2")["settings"]["stride"] == [2, 2]
    assert 'for a one-channel input, "1 0; 0 1 | 0 1; 1 0" is two filters' in help_of("conv")
    assert _json(capsys, "conv", "--input", "1 2; 3 4", "--kernel", "1 | 2")["output_shape"] == [2, 2, 2]
    assert "|| between input channels, | between filters (so for a one-channel input | separates filters)" in (
        help_of("transposed")
    )


@pytest.mark.parametrize(
    ("argv", "first"),
    [
        (["rf", "conv f=3", "--input", "100,3"], "input 100x3 (L,C) = 300 values; one value when all axes agree"),
        (["shape", "conv f=3", "--input", "16,32,30,3"], "input 16x32x30x3 (D,H,W,C) = 46,080 values;"),
        (["params", "conv f=3", "--input", "3,16,32,30", "--chw"], "input 3x16x32x30 (C,D,H,W)"),
        (["shape", "conv f=3", "--input", "32,32,3"], "input 32x32x3 (H,W,C) = 3,072 values;"),
    ],
)
def test_input_label_names_the_axes_given(capsys: pytest.CaptureFixture[str], argv: list[str], first: str) -> None:
    # 1-D and 3-D inputs were labelled (H,W,C)
    code, out, _ = _run(capsys, *argv)
    assert code == 0 and out.startswith(first)


def test_large_sizes_print_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    # The table and the steps used 6 significant digits: a 29,999,998-pixel map read '3e+07' and the
    # centre 14999999.5 read '1.5e+07'.
    code, out, _ = _run(capsys, "rf", "conv f=3; gap", "--input", "30000000,3,3")
    assert code == 0
    assert "29999998x1" in out and "14999999.5x1" in out and "e+07" not in out
