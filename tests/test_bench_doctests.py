"""The runnable examples in the docstrings of cnnlab.bench stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "backends", "compare", "fingerprint", "leaderboard", "measure", "runner"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module("cnnlab.bench" if name == "__init__" else f"cnnlab.bench.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
