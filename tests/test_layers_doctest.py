"""The runnable examples in the docstrings of cnnlab.layers (and the P4 model family) stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "cnnlab.layers",
    "cnnlab.layers.blocks",
    "cnnlab.layers.conv",
    "cnnlab.layers.edges",
    "cnnlab.layers.gated",
    "cnnlab.layers.p4",
    "cnnlab.layers.pool",
    "cnnlab.layers.resize",
    "cnnlab.models.p4",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    torch.manual_seed(0)
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
