"""Analysis numbers that once were wrong, against references: autograd's receptive field, FlopCounterMode.

The empirical receptive field: with positive weights and a positive float64 input nothing cancels, so
the gradient of the centre output unit is non-zero exactly on the input pixels that reach it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from _rf_autograd import positive, widest_reach
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


# --- receptive fields against autograd ---------------------------------------------------------


def empirical_rf(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Extent (H, W) of the input pixels that reach the centre output unit (positive weights, fp64)."""
    torch.manual_seed(0)
    model = model.double().eval()
    positive(model)  # positive and unequal: nothing cancels
    x = (torch.rand(1, *shape, dtype=torch.double) + 0.5).requires_grad_(True)
    y = model(x)
    y[(0, slice(None), *(n // 2 for n in y.shape[-2:]))].sum().backward()
    assert x.grad is not None
    seen = x.grad[0].abs().sum(0) > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


class _Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class _ConvNeXtBlock(nn.Module):
    """Depthwise 7x7, then LayerNorm and an MLP over channels in channels-last layout (ConvNeXt)."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.fc2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        y = self.fc2(F.gelu(self.fc1(self.norm(y))))
        return x + y.movedim(-1, 1).contiguous()  # (B, H, W, C) -> (B, C, H, W)


class _Sliced(nn.Module):
    def __init__(self, ellipsis: bool) -> None:
        super().__init__()
        self.ellipsis = ellipsis
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.b(y[..., ::2, ::2] if self.ellipsis else y[:, :, ::2, ::2])


class _FlatRound(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).unflatten(2, x.shape[2:])  # (B, C, H, W) -> (B, C, H*W) -> (B, C, H, W)


class _TransposeHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(-1, -2)


RF_CASES = {
    # A1: channels-last LayerNorm between permutes does not mix pixels
    "permute-layernorm": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), _Permute(0, 2, 3, 1), nn.LayerNorm(4), _Permute(0, 3, 1, 2),
                              nn.Conv2d(4, 4, 1)), (3, 12, 12), (3, 3)),
    "convnext-block": (lambda: nn.Sequential(nn.Conv2d(3, 4, 1), _ConvNeXtBlock()), (3, 20, 20), (7, 7)),
    # per-axis RFs follow the axes through a transpose: the (3, 1) kernel then runs along W
    "transpose-follows-axes": (lambda: nn.Sequential(nn.Conv2d(1, 2, (1, 5)), _TransposeHW(), nn.Conv2d(2, 2, (3, 1))),
                               (1, 12, 12), (1, 7)),
    # A2: uneven adaptive windows, then a conv
    "adaptive-11-4-conv": (lambda: nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(1, 1, 3)), (1, 11, 11), (9, 9)),
    "adaptive-7-5-conv": (lambda: nn.Sequential(nn.AdaptiveAvgPool2d(5), nn.Conv2d(1, 1, 3)), (1, 7, 7), (5, 5)),
    # A5: a Linear on the last spatial axis mixes that axis
    "linear-on-width": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(6, 5)), (3, 8, 8), (3, 8)),
    # C1: an ellipsis slice is a crop like the spelled-out one
    "ellipsis-slice": (lambda: _Sliced(True), (3, 11, 11), (7, 7)),
    "spelled-out-slice": (lambda: _Sliced(False), (3, 11, 11), (7, 7)),
    # C2: flatten then unflatten moves nothing
    "flatten-unflatten": (lambda: nn.Sequential(nn.Conv2d(1, 1, 3), _FlatRound(), nn.Conv2d(1, 1, 3)), (1, 10, 10),
                          (5, 5)),
    "flatten-unflatten-modules": (
        lambda: nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(2), nn.Unflatten(2, (8, 8)), nn.Conv2d(1, 1, 3)),
        (1, 10, 10), (5, 5)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RF_CASES))
def test_rf_equals_the_gradient_support(case: str) -> None:
    build, shape, expected = RF_CASES[case]
    assert empirical_rf(build(), shape) == expected  # the reference itself
    rf = analyze(build(), shape).layers[-1].rf
    assert rf is not None and rf.size == expected


def empirical_sizes(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Largest extent (H, W) over every output unit's gradient support."""
    model = model.double().eval()
    positive(model)
    x = torch.ones(1, *shape, dtype=torch.double, requires_grad=True)
    return widest_reach(model(x), x)


@pytest.mark.parametrize(
    ("size", "pooled", "conv"),
    [(11, 4, {}), (11, (3, 7), {}), (11, 3, {"padding": 1}), (7, 5, {}), (16, 4, {}), (10, 3, {"padding": 1})],
)
def test_adaptive_pool_rf_is_the_widest_real_unit(size: int, pooled: object, conv: dict[str, int]) -> None:
    # uneven windows exist only on the map: no unit may see more than the input has
    model = nn.Sequential(nn.AdaptiveAvgPool2d(pooled), nn.Conv2d(1, 1, 3, **conv))  # type: ignore[arg-type]
    rf = analyze(model, (1, size, size)).layers[-1].rf
    assert rf is not None and rf.size == empirical_sizes(model, (1, size, size))


class _TwoGrids(nn.Module):
    """Two branches on shifted grids (a 3x3 'same' conv and a padded 2x2 conv), joined by cat or add."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 2)
        self.c = nn.Conv2d(8 if op == "cat" else 4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), F.pad(self.b(x), (0, 1, 0, 1))
        return self.c(torch.cat([a, b], 1) if self.op == "cat" else a + b)


@pytest.mark.parametrize("op", ["cat", "add"])
def test_misaligned_grids_are_flagged_for_channel_concat_too(op: str) -> None:
    # The merge compared whole shapes, so a channel concat's inputs (4 + 4 -> 8 channels) never matched
    # the output and U-Net/DenseNet-style skips lost the rf-misaligned warning.
    report = analyze(_TwoGrids(op), (3, 16, 16))
    assert any(w.rule == "rf-misaligned" and w.layer == op for w in report.warnings)
