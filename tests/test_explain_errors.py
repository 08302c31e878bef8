"""`cnnlab explain` on user mistakes: one paragraph naming the option, the rule, what was received and
the fix, exit code 2, never a traceback (and never minutes of work or all the memory)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cnnlab.cli.main import main


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out[:300])
    assert err.startswith("error: ") and "Traceback" not in err
    return " ".join(err.split())


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--padding", "3000"],
            r"6002x6002 grid, mostly because of padding=\(3000, 3000\); .* at most 200 cells per side\. "
            r"Use a smaller padding, or get the output size alone with "
            r'`cnnlab explain shape "conv f=1 s=1 p=3000 d=1" --input 2,2,1`\.$',
        ),
        (
            ["transposed", "--input", "1 2; 3 4", "--kernel", "1 1; 1 1", "--dilation", "100000000"],
            r"200000002x200000002 grid, mostly because of dilation=\(100000000, 100000000\); .* Use a smaller "
            r'dilation, .* `cnnlab explain shape "convT f=2 s=1 p=0 op=0 d=100000000" --input 2,2,1`',
        ),
        (
            ["transposed", "--input", "1 2; 3 4", "--kernel", "1 1; 1 1", "--stride", "3000"],
            r"3003x3003 grid, mostly because of stride=\(3000, 3000\); .* Use a smaller stride",
        ),
        (
            ["transposed", "--input", "1 2; 3 4", "--kernel", "1 1; 1 1", "--stride", "3000", "--padding", "2"],
            r"2999x2999 grid, mostly because of stride=\(3000, 3000\)",
        ),
        (
            ["pool", "--input", "@WIDE", "--kernel", "2", "--mode", "avg", "--ceil-mode"],
            r"4x252 grid, mostly because of input=3x251; .* Use a smaller input, .* `cnnlab explain shape "
            r'"avgpool f=2 s=2 p=0 ceil=1" --input 3,251,1`',
        ),
        (
            ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--padding", "99999999999999999999"],
            r"mostly because of padding=\(99999999999999999999, 99999999999999999999\)",
        ),
        (
            ["conv", "--input", "1 2; 3 4", "--kernel", "1 1", "--padding", "same", "--dilation", "1000"],
            r"2x1002 grid, mostly because of dilation=\(1000, 1000\); .* Use a smaller dilation",
        ),
    ],
)
def test_huge_settings_are_rejected_before_the_trace(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], pattern: str
) -> None:
    wide = tmp_path / "wide.txt"
    wide.write_text("\n".join(" ".join(["1"] * 251) for _ in range(3)))
    assert re.search(pattern, _error(capsys, *[a.replace("@WIDE", f"@{wide}") for a in argv]))


def test_a_trace_at_the_limit_still_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # 2 + 2*99 = 200 cells per side: the largest grid a trace shows
    assert main(["explain", "conv", "--input", "1 2; 3 4", "--kernel", "1", "--padding", "99"]) == 0
    assert "Output (200x200):" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["conv", "--input", "@", "--kernel", "1"], r"--input '@' names no file: @ must be followed by a file name"),
        (["pool", "--input", "@DIR", "--kernel", "2"], r"--input @.*: the file '.*' is a directory\. Write the value"),
        (["shape", "@DIR", "--input", "32,32,3"], r"SPEC @.*: the file .* is a directory\. .* SPEC @layers\.txt"),
        (["conv", "--input", "1", "--kernel", "@DIR/none.txt"], r"--kernel @.*none\.txt: the file .* does not exist"),
        (["conv", "--input", "@BIN", "--kernel", "1"], r"--input @.*: the file .* is not UTF-8 text \(byte 0xff at"),
        (["rf", "--compare", "conv f=3", "@DIR"], r"SPEC_B @.*: the file .* is a directory"),
    ],
)
def test_at_file_mistakes_name_the_option_and_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], pattern: str
) -> None:
    (tmp_path / "bin.txt").write_bytes(b"1 2\xff\xfe")
    argv = [a.replace("@DIR", f"@{tmp_path}").replace("@BIN", f"@{tmp_path / 'bin.txt'}") for a in argv]
    assert re.search(pattern, _error(capsys, *argv))


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["shape", ";", "--input", "32,32,3"], "SPEC ';'"),
        (["rf", " ; ; ", "--input", "32,32,3"], "SPEC ' ; ; '"),
        (["params", ";", "--input", "8,8,1"], "SPEC ';'"),
        (["rf", "--compare", ";", "conv f=3"], "SPEC_A ';'"),
        (["rf", "--compare", "conv f=3", "\n;\n"], "SPEC_B '\\n;\\n'"),
    ],
)
def test_a_spec_of_only_separators_needs_a_layer_spec(
    capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    # these raised IndexError (shape, rf) or printed an empty table with "total 0" (params)
    err = _error(capsys, *argv)
    assert f"explain {argv[0]} needs a layer spec ({option} holds no layer, only separators or spaces)" in err


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["rf", "conv f=3", "--compare", "conv f=3; conv f=3", "conv f=5"],
            r"explain rf takes either one SPEC or --compare SPEC_A SPEC_B, not both; received the SPEC 'conv f=3'",
        ),
        (
            ["rf", "--compare", "conv f=3", "conv f=5", "--channels=-5"],
            r"--channels must be a positive whole number .* received --channels -5\. Write e\.g\. --channels 64\.",
        ),
        (
            ["rf", "--compare", "conv f=3", "conv f=5", "--input", "8,8,3", "--channels", "5"],
            r"--channels is for --compare without --input; .* Received --input 8,8,3 and --channels 5",
        ),
        (  # --input is honoured: a 20x20 input is too small for 16 stacked 3x3 convolutions
            ["rf", "--compare", "; ".join(["conv f=3"] * 16), "conv f=33", "--input", "20,20,8"],
            r"conv output would be 0 along H: input 2, kernel 3",
        ),
    ],
)
def test_compare_mistakes(capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str) -> None:
    assert re.search(pattern, _error(capsys, *argv))


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (  # named 'padding' although the user typed --output-padding
            ["transposed", "--input", "1 2; 3 4", "--kernel", "1 1; 1 1", "--output-padding=-1"],
            r"^error: output_padding must be >= 0 on every side; received output_padding=-1\. Use output_padding=0",
        ),
        (  # leaked numpy reprs: [np.float64(1.0), np.float64(2.0)]
            ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--bias", "1,2.5"],
            r"bias \(--bias\) must be one number, or one per filter \(1 filter\); received 2 numbers \(1, 2\.5\)\. "
            r"Give one number for all filters\.",
        ),
        (  # omitted same/valid, which the help lists
            ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--padding", "foo"],
            r"--padding must be an int, H,W, top,bottom,left,right, same or valid; received --padding 'foo'\. "
            r"Write e\.g\. --padding 1 or --padding same\.",
        ),
        (  # pool has no dilation, yet the message spoke of dilation*(kernel-1)+1
            ["pool", "--input", "1 2 3; 4 5 6; 7 8 9", "--kernel", "5"],
            r"need input \+ 2\*padding >= kernel = 5, but input \+ 2\*padding = 3\. Use a smaller kernel, more",
        ),
        (
            ["shape", "conv f=x", "--input", "8,8,1"],
            r"f must be a whole number, or one per axis like 1x7, in layer 'conv f=x'; received f='x'",
        ),
        (["shape", "conv f=3x", "--input", "8,8,1"], r"received f='3x'\. Write e\.g\. f=3\."),
        (["shape", "dropout 1.5", "--input", "8,8,1"], r"'dropout 1\.5' takes no options: .* Write just 'dropout'"),
        (["shape", "up 2", "--input", "8,8,1"], r"An up layer takes mode, s \(and params=N\); write e\.g\. 'up s=2'"),
        (["params", "conv f=3 params=-1", "--input", "8,8,1"], r"a whole number >= 0; received params=-1 in layer"),
        (  # a label alone: IndexError from the parser
            ["shape", "conv f=3; FC3:", "--input", "8,8,1"],
            r"layer label 'FC3:' names no layer; received 'FC3:'\. Write the layer after the label, e\.g\. 'FC3: fc",
        ),
    ],
)
def test_messages_name_what_the_user_typed(capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str) -> None:
    assert re.search(pattern, _error(capsys, *argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["conv", "--input", "-1,2;3,4", "--kernel", "-1", "--bias", "-1.5"],
        ["conv", "--input", "1 2; 3 4", "--kernel", "1", "--bias", "-.5", "--stride", "1"],
        ["pool", "--input", "-1,-2;-3,-4", "--kernel", "2"],
    ],
)
def test_values_that_start_with_a_minus_are_values(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    # argparse took '--bias -1,2' for a missing value ("expected one argument")
    assert main(["explain", *argv]) == 0, capsys.readouterr().err


def test_a_negative_shape_reaches_the_shape_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert "input must be 2 to 4 positive whole numbers" in _error(capsys, "shape", "conv f=3", "--input", "-1,32,3")


@pytest.mark.parametrize("layer", ["convT f=2 s=100000000 c=1", "up s=1000000 mode=bilinear"])
def test_a_stride_of_millions_is_refused_at_once_for_the_rf_and_kept_for_the_shape(
    capsys: pytest.CaptureFixture[str], layer: str
) -> None:
    # the exact field's pattern repeats every s units: it was walked unit by unit (minutes, gigabytes)
    spec = f"{layer}; conv f=3"
    for argv in (["rf", spec, "--input", "2,2,1"], ["rf", "--compare", spec, "conv f=3"]):
        text = _error(capsys, *argv)
        assert re.search(rf"layer '{re.escape(layer)}': the exact receptive field here repeats only every [\d,]+ "
                         r"units .* at most 65,536 units\. Use smaller strides or scales", text)  # fmt: skip
    for what in ("shape", "params"):
        assert main(["explain", what, spec, "--input", "2,2,1", "--format", "json"]) == 0
        steps = json.loads(capsys.readouterr().out)["steps"]
        assert [s["rf"] for s in steps] == [None, None]  # not a stand-in passed off as the field
    assert main(["explain", "rf", "up s=4; conv f=3", "--input", "2,2,1"]) == 0  # a short pattern still runs
