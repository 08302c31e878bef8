"""The ``>>>`` examples of cnnlab.viz run as tests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "cnnlab.viz", "cnnlab.viz.animate", "cnnlab.viz.curves", "cnnlab.viz.edges", "cnnlab.viz.features",
    "cnnlab.viz.filters", "cnnlab.viz.gradcam", "cnnlab.viz.grid", "cnnlab.viz.hooks", "cnnlab.viz.images",
    "cnnlab.viz.outpath", "cnnlab.viz.report", "cnnlab.viz.report_board", "cnnlab.viz.report_html",
    "cnnlab.viz.report_summary", "cnnlab.viz.rf", "cnnlab.viz.run_data", "cnnlab.viz.sources",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
