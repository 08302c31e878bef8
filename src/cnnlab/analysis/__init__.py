"""Exact shapes, parameters, MACs, memory and receptive fields of any ``nn.Module``, plus design lint.

>>> import torch.nn as nn
>>> from cnnlab.analysis import analyze
>>> report = analyze(nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU()), (1, 32, 32))
>>> report.layer("0").macs, report.layer("0").connections, report.layer("0").rf.size
(117600, 122304, (5, 5))
"""

from __future__ import annotations

from cnnlab.analysis.analyze import analyze, check_input_shape
from cnnlab.analysis.report import CONVENTION, LayerRow, LintWarning, ModelReport, Totals

__all__ = ["CONVENTION", "LayerRow", "LintWarning", "ModelReport", "Totals", "analyze", "check_input_shape"]
