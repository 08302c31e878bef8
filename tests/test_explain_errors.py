"""`cnnlab explain` on user mistakes: one paragraph naming the option, the rule, what was received and
the fix, exit code 2, never a traceback (and never minutes of work or all the memory)."""

from __future__ import annotations

import re

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
            r"Use a smaller padding, or `cnnlab explain shape`",
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
    capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str
) -> None:
    assert re.search(pattern, _error(capsys, *argv))


def test_a_trace_at_the_limit_still_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # 2 + 2*99 = 200 cells per side: the largest grid a trace shows
    assert main(["explain", "conv", "--input", "1 2; 3 4", "--kernel", "1", "--padding", "99"]) == 0
    assert "Output (200x200):" in capsys.readouterr().out
