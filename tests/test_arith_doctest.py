"""The ``>>>`` examples in cnnlab.arith's docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["_norm", "_spec", "_support", "explain", "notes", "params", "receptive", "sizes"]


@pytest.mark.parametrize("name", ["cnnlab.arith", *(f"cnnlab.arith.{m}" for m in MODULES)])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
