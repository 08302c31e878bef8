"""`cnnlab explain` on user mistakes: one paragraph naming the option, the rule, what was received and
the fix, exit code 2, never a traceback (and never minutes of work or all the memory)."""

from __future__ import annotations

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
