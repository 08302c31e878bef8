"""The runnable examples in the docstrings of cnnlab.data stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "augment", "cifar", "dataset", "download", "folder", "idx", "loader", "rotated",
           "shapes", "split"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module("cnnlab.data" if name == "__init__" else f"cnnlab.data.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
