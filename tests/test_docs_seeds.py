"""docs/seeds.md is executable: every ``$ cnnlab ...`` line in its console blocks runs, and the lines
printed under it appear in the command's output, in that order ("..." marks lines left out).

So the guide that shows how to reproduce each seed's numbers, and where a seed is wrong, cannot drift
from what cnnlab prints.
"""

from __future__ import annotations

import doctest
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnlab.cli.main import main

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "seeds.md"


@dataclass(frozen=True)
class Example:
    line: int  # of the command in docs/seeds.md
    argv: list[str]
    expected: list[str]


def _examples(text: str) -> list[Example]:
    examples: list[Example] = []
    for block in re.finditer(r"^```console\n(.*?)^```", text, flags=re.M | re.S):
        start = text.count("\n", 0, block.start(1)) + 1
        current: Example | None = None
        for offset, raw in enumerate(block.group(1).splitlines()):
            if raw.startswith("$ "):
                words = shlex.split(raw[2:])
                assert words[0] == "cnnlab", f"docs/seeds.md:{start + offset}: only cnnlab commands run here"
                current = Example(start + offset, words[1:], [])
                examples.append(current)
            elif raw.strip() and current is not None:
                current.expected.append(raw)
    return examples


def _squash(line: str) -> str:
    return " ".join(line.split())


EXAMPLES = _examples(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_has_examples_for_every_seed() -> None:
    assert len(EXAMPLES) >= 25
    text = GUIDE.read_text(encoding="utf-8")
    for seed in ("000_826d3f3e8e67bb60", "001_d8ba420d4898eb05", "002_0f8016f202246386", "003_7334853245d58038",
                 "004_3e56abab3fa508c3"):  # fmt: skip
        assert seed in text


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"line{e.line}" for e in EXAMPLES])
def test_command_prints_what_the_guide_shows(
    example: Example, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(GUIDE.parents[1])  # @examples/specs/... paths are relative to the repository root
    code = main(example.argv)
    out, err = capsys.readouterr()
    assert code == 0, f"docs/seeds.md:{example.line}: exit {code}\n{err}"
    got = [_squash(line) for line in out.splitlines()]
    position = 0
    for want in example.expected:
        if want.strip() == "...":
            continue
        needle = _squash(want)
        hit = next((i for i in range(position, len(got)) if needle in got[i]), None)
        assert hit is not None, f"docs/seeds.md:{example.line}: {needle!r} not found (in order) in:\n{out}"
        position = hit + 1


def test_python_examples_run_as_doctests() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"^```pycon\n(.*?)^```", text, flags=re.M | re.S)
    assert len(blocks) >= 3
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(blocks):
        runner.run(parser.get_doctest(block, {}, f"docs/seeds.md pycon block {i + 1}", str(GUIDE), 0))
    failed, attempted = runner.summarize(verbose=False)
    assert attempted >= 10 and failed == 0
