"""``--help`` of every command and sub-command, as golden files (STYLE 9: snapshot what people read).

A change to an option, a default or a help text shows up as a diff of ``tests/golden/help/*.txt``: regenerate
them with ``CNNLAB_UPDATE_GOLDEN=1 pytest tests/test_cli_help_golden.py`` and review the diff.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnnlab.cli.main import build_parser

GOLDEN = Path(__file__).parent / "golden" / "help"


def _parsers(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:  # argparse keeps its sub-parsers among the actions
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name}_{sub}")


def _all(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    return {name: p.format_help() for name, p in _parsers(build_parser(), "cnnlab")}


def test_help_matches_the_golden_files(monkeypatch: pytest.MonkeyPatch) -> None:
    helps = _all(monkeypatch)
    if os.environ.get("CNNLAB_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.txt"):
            old.unlink()
        for name, text in helps.items():
            (GOLDEN / f"{name}.txt").write_text(text)
    stored = {p.stem: p.read_text() for p in GOLDEN.glob("*.txt")}
    assert sorted(stored) == sorted(helps), "commands added or removed: regenerate with CNNLAB_UPDATE_GOLDEN=1"
    changed = [name for name in helps if helps[name] != stored[name]]
    assert not changed, f"--help changed for {changed}: regenerate with CNNLAB_UPDATE_GOLDEN=1 and review the diff"
