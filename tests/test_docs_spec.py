"""docs/spec.md is executable: every spec block builds and gives the output shape and parameter count of
its ``builds:`` line, the example files have the parameter counts the page states, the bad spec fails
with the message shown, and the ``$ cnnlab`` commands and ``>>>`` examples run.

So the page that teaches the spec language cannot drift from what ``from_spec`` builds.
"""

from __future__ import annotations

import doctest
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cnnlab.cli.main import main
from cnnlab.errors import SpecError
from cnnlab.models import from_spec

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "spec.md"
TEXT = PAGE.read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", flags=re.M | re.S)
BUILDS = re.compile(r"builds: output \(([\d, ]+)\)(?:, ([\d,]+) parameters)?")


@dataclass(frozen=True)
class Block:
    line: int  # of the block's first line in docs/spec.md
    lang: str
    body: str
    after: str  # the page's text up to the next fenced block


def _blocks() -> list[Block]:
    found = list(FENCE.finditer(TEXT))
    out = []
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(TEXT)
        out.append(Block(TEXT.count("\n", 0, m.start(2)) + 1, m.group(1), m.group(2), TEXT[m.end() : end]))
    return out


BLOCKS = _blocks()
SPECS = [b for b in BLOCKS if b.lang in ("yaml", "toml", "json") and not b.body.startswith("# bad.yaml")]


def _load(block: Block) -> Any:
    if block.lang == "yaml":
        return yaml.safe_load(block.body)
    if block.lang == "toml":
        return tomllib.loads(block.body)
    return json.loads(block.body)


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_page_has_its_examples() -> None:
    langs = {b.lang for b in SPECS}
    assert {"yaml", "toml", "json"} <= langs, langs
    assert len(SPECS) >= 6


@pytest.mark.parametrize("block", SPECS, ids=[f"line{b.line}-{b.lang}" for b in SPECS])
def test_spec_block_builds_what_it_states(block: Block) -> None:
    where = f"docs/spec.md:{block.line}"
    first_paragraph = block.after.strip().split("\n\n")[0]  # the line under a JSON block (no comments there)
    stated = BUILDS.search(block.body) or BUILDS.search(first_paragraph)
    assert stated, f"{where}: a spec block states what it builds ('builds: output (C, H, W), N parameters')"
    net = from_spec(_load(block))
    shape = tuple(_number(n) for n in stated.group(1).split(",") if n.strip())
    assert net.output_shape == shape, f"{where}: states output {shape}, builds {net.output_shape}"
    assert net(torch.zeros(2, *net.input_size)).shape == (2, *shape), where
    if stated.group(2):
        assert _params(net) == _number(stated.group(2)), f"{where}: states {stated.group(2)} parameters"


def test_the_example_files_have_the_stated_parameters() -> None:
    stated = re.findall(r"`(\w+\.(?:toml|yaml|json))` \([^`]*?([\d,]+) parameters\)", TEXT)
    assert {name for name, _ in stated} == {"lenet.toml", "small_resnet.yaml", "inception_block.yaml"}
    for name, count in stated:
        assert _params(from_spec(ROOT / "examples" / "specs" / name)) == _number(count), name


def test_lenet_face_as_stated() -> None:
    # "num_features is the channel count it returns (for LeNet: `(120, 1, 1)`, so 120)"
    assert "(for LeNet: `(120, 1, 1)`, so 120)" in TEXT
    net = from_spec(ROOT / "examples" / "specs" / "lenet.toml")
    x = torch.zeros(2, *net.input_size)
    assert net.forward_features(x).shape == (2, 120, 1, 1)
    assert net.num_features == 120
    assert net.forward_head(net.forward_features(x), pre_logits=True).shape == (2, 84)
    net.reset_classifier(5)
    assert net(x).shape == (2, 5)


def test_a_spec_without_linear_has_no_classifier() -> None:
    net = from_spec({"input": [1, 8, 8], "layers": [{"conv": 4}, "relu"]})
    assert len(net.head) == 0 and net.num_features == 4
    with pytest.raises(SpecError):
        net.reset_classifier(3)


def test_the_bad_spec_fails_with_the_message_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = next(b for b in BLOCKS if b.lang == "yaml" and b.body.startswith("# bad.yaml"))
    shown = next(b for b in BLOCKS if b.lang == "text" and b.line > bad.line)
    message = " ".join(shown.body.split())
    with pytest.raises(SpecError) as caught:
        from_spec(_load(bad))
    assert " ".join(str(caught.value).split()) == message
    path = tmp_path / "bad.yaml"
    path.write_text(bad.body, encoding="utf-8")
    assert main(["inspect", str(path)]) == 2  # "prints that paragraph and exits with code 2"
    assert " ".join(capsys.readouterr().err.split()) == f"error: {message}"


CONSOLE = [line[2:] for b in BLOCKS if b.lang == "console" for line in b.body.splitlines() if line.startswith("$ ")]


@pytest.mark.parametrize("command", CONSOLE)
def test_console_commands_run(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    words = shlex.split(command)
    assert words[0] == "cnnlab"
    assert main(words[1:]) == 0, capsys.readouterr().err


def test_python_examples_run_as_doctests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    blocks = [b for b in BLOCKS if b.lang == "pycon"]
    assert blocks
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for b in blocks:
        runner.run(parser.get_doctest(b.body, {}, f"docs/spec.md:{b.line}", str(PAGE), b.line))
    failed, attempted = runner.summarize(verbose=False)
    assert attempted >= 3 and failed == 0
