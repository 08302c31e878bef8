"""Analysis numbers that once were wrong, against references: autograd's receptive field, FlopCounterMode.

The empirical receptive field: with positive weights and a positive float64 input nothing cancels, so
the gradient of the centre output unit is non-zero exactly on the input pixels that reach it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import analyze
from cnnlab.errors import AnalysisError


def flop_macs(fn: object, *args: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)  # type: ignore[operator]
    return counter.get_total_flops() // 2


# --- A3: multi-head attention -------------------------------------------------------------------


class _Attend(nn.Module):
    def __init__(self, batch_first: bool, kdim: int | None = None) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.kv = nn.Conv2d(8, kdim or 8, 1)
        self.a = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=kdim, vdim=kdim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
        kv = self.kv(x[..., ::2, :]).flatten(2).transpose(1, 2)  # S = H*W/2 keys
        if not self.batch_first:
            q, kv = q.transpose(0, 1), kv.transpose(0, 1)
        return self.a(q, kv, kv, need_weights=False)[0]


@pytest.mark.parametrize(("batch_first", "kdim"), [(True, None), (False, None), (True, 4)])
def test_multihead_attention_macs_are_projections_plus_qk_and_av(batch_first: bool, kdim: int | None) -> None:
    model = _Attend(batch_first, kdim)
    row = analyze(model, (8, 4, 4)).layer("a")
    x = torch.randn(1, 8, 4, 4)
    q = x.flatten(2).transpose(1, 2)
    kv = model.kv(x[..., ::2, :]).flatten(2).transpose(1, 2)
    # the projections as FlopCounterMode sees them on the (unfused) training path ...
    mha = nn.MultiheadAttention(8, 2, batch_first=True, kdim=kdim, vdim=kdim).train()
    projections = flop_macs(lambda: mha(q, kv, kv, need_weights=False))
    # ... plus QK^T and AV of the two heads (16 queries, 8 keys, head dim 4) as matmuls
    qh, kh, vh = torch.randn(2, 16, 4), torch.randn(2, 8, 4), torch.randn(2, 8, 4)
    attention = flop_macs(lambda: (qh @ kh.transpose(1, 2)).softmax(-1) @ vh)
    assert row.macs == projections + attention > 0


def test_multihead_attention_states_its_convention() -> None:
    report = analyze(_Attend(True), (8, 4, 4))
    assert any("QK^T + AV" in w.message for w in report.warnings)


# --- B: what analyze accepts ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_models_in_other_dtypes_are_analysed(dtype: torch.dtype) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3)).to(dtype)
    report = analyze(model, (1, 8, 8))
    assert report.totals.macs == 2 * 9 * 36 + 2 * 2 * 9 * 16
    # activation memory is counted in the model's own dtype
    assert report.layer("0").activation_bytes == 2 * 36 * torch.empty((), dtype=dtype).element_size()


def test_a_non_module_is_a_type_error_naming_model() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module; received function"):
        analyze(lambda x: x, (1, 4, 4))  # type: ignore[arg-type]


def test_errors_do_not_speak_only_of_the_cli_flag() -> None:
    with pytest.raises(AnalysisError, match=r"input_shape in Python, --input on the command line"):
        analyze(nn.Conv2d(3, 2, 3), (3, 2, 2))


def test_a_shape_with_the_batch_axis_gets_a_hint() -> None:
    with pytest.raises(AnalysisError, match=r"without the batch axis; \(1, 1, 8, 8\) .* try \(1, 8, 8\)"):
        analyze(nn.Conv2d(1, 2, 3), (1, 1, 8, 8))


def test_integer_like_shapes_are_accepted() -> None:
    model = nn.Conv2d(1, 2, 3)
    expected = analyze(model, (1, 8, 8)).totals.macs
    assert analyze(model, np.array([1, 8, 8])).totals.macs == expected
    assert analyze(model, (np.int64(1), torch.tensor(8), 8)).input_shape == (1, 8, 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive integers"):
        analyze(model, (1.0, 8, 8))  # type: ignore[arg-type]
