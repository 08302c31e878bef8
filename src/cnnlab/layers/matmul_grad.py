"""``MatmulGradConv2d``: an ``nn.Conv2d`` whose weight gradient on tiny maps is one matrix multiply.

On a CPU, oneDNN computes the weight gradient of a 3x3 convolution over a tiny feature map far
below the machine's matmul speed: for ``128 -> 256`` channels on 3x3 maps (FastNet's last stage),
batch 256, bf16, it takes 6.8 ms, against 0.95 ms for the whole forward pass. Written as im2col
(the nine shifted views of the padded input, concatenated along channels in channels-last order)
and one ``(C_out, B*H*W) @ (B*H*W, 9*C_in)`` matmul, the same gradient takes 1.7 ms, and a whole
FastNet training step runs 1.15x faster (``benchmarks/conv_grad.py`` measures both against oneDNN
in one run; its latest output is ``benchmarks/results/conv_grad.md``).

With one input channel (a stem on grey images) in fp32, the forward pass is a matmul too:
``im2col3x3(x) @ w``, a channels-last output. oneDNN's AVX2 kernel for ``1 -> 16`` channels on
28x28 maps, batch 256, takes 16 ms against 5 ms for the matmul (an AMD EPYC without AVX-512, where the
default recipe trains in fp32); bf16 autocast keeps oneDNN's own kernels.

With ``pooled=True`` the output feeds a floor-mode 2x2 max pool (FastNet's conv -> pool order), which
drops the last row and column of an odd-sized map: in training the layer then does not compute them.
It pads the input by one pixel on the top and left only (and on the bottom or right only where that
side is even) and convolves without padding, so a 7x7 map gives the 6x6 outputs the pool reads:
the same pooled values, bit for bit, with 36 instead of 49 output positions. Together with FastNet's
frozen stem batch norm this took the default recipe's fp32 training on a 2-core AMD EPYC from 1556 to
1789 images/s (``benchmarks/results/train_speed_avx2.md`` at commits 91564d1 and 5a61c87). In eval
mode, and wherever the shapes are read (tracing, export), the output keeps its full size.

Everything else is the stock layer: the forward pass is ``F.conv2d``, the input gradient is
oneDNN's, the parameters and ``state_dict`` are those of ``nn.Conv2d``. The matmul path is taken
only where it pays and applies: training mode, CPU tensors with gradients on, maps of at most
``max_pixels`` pixels (16: 3x3 and 4x4 maps; on 7x7 maps oneDNN is faster), a 3x3 kernel with
stride 1, padding 1, no dilation, no groups; never while tracing (``torch.fx`` or
``torch.jit.trace``), exporting or compiling.

>>> conv = MatmulGradConv2d(8, 16, 3, padding=1)
>>> x = torch.randn(2, 8, 3, 3, requires_grad=True)
>>> conv(x).square().sum().backward()
>>> ref = torch.nn.Conv2d(8, 16, 3, padding=1)
>>> _ = ref.load_state_dict(conv.state_dict())
>>> x2 = x.detach().requires_grad_(True)
>>> ref(x2).square().sum().backward()
>>> torch.allclose(conv.weight.grad, ref.weight.grad, atol=1e-4), torch.allclose(x.grad, x2.grad, atol=1e-5)
(True, True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["MatmulGradConv2d", "im2col3x3"]


def im2col3x3(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B*H*W, 9*C)``: the 3x3 neighbourhoods (zero padding 1), channels fastest.

    Column ``(i * 3 + j) * C + c`` holds channel ``c`` at offset ``(i - 1, j - 1)``, the order of
    ``weight.permute(0, 2, 3, 1)``.
    """
    b, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    cols = torch.cat([xp[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], dim=3)
    return cols.reshape(b * h * w, 9 * c)


class _MatmulGradConv(torch.autograd.Function):
    """``F.conv2d(x, w, b, padding=1)`` with the weight gradient computed by :func:`im2col3x3`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            out_ch = weight.shape[0]
            g = grad_out.permute(0, 2, 3, 1).reshape(-1, out_ch)  # (B*H*W, C_out); a view when channels-last
            if ctx.needs_input_grad[1]:
                grad_w = (g.t() @ im2col3x3(x)).view(out_ch, 3, 3, -1).permute(0, 3, 1, 2)  # (C_out, C_in, 3, 3)
                layout = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else None
                grad_w = grad_w.contiguous(memory_format=layout or torch.contiguous_format)  # the weight's layout
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


class _MatmulConv1(torch.autograd.Function):
    """``F.conv2d(x, w, b, padding=1)`` for one input channel as ``im2col3x3(x) @ w`` (output channels-last)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, _, h, w = x.shape
        out_ch = weight.shape[0]
        cols = im2col3x3(x)  # (B*H*W, 9)
        wm = weight.reshape(out_ch, 9).t()
        out = cols @ wm if bias is None else torch.addmm(bias, cols, wm)
        ctx.save_for_backward(x, weight, cols if ctx.needs_input_grad[1] else None)
        ctx.has_bias = bias is not None
        return out.view(b, h, w, out_ch).permute(0, 3, 1, 2)  # (B, C_out, H, W), channels-last memory

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, cols = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        g = grad_out.permute(0, 2, 3, 1).reshape(-1, weight.shape[0])  # (B*H*W, C_out)
        if ctx.needs_input_grad[1]:
            grad_w = (g.t() @ cols).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


def _autocast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` as autocast casts a convolution's argument: float64 is never cast, other floats go to ``dtype``."""
    return t if t.dtype == torch.float64 else t.to(dtype)


class MatmulGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes its weight gradient as an im2col matmul on maps of <= ``max_pixels``.

    With one input channel in fp32 its forward pass is an im2col matmul as well. ``pooled=True``
    declares that a floor-mode 2x2 max pool reads the output: in training, an odd map's last row and
    column, which that pool drops, are not computed (the output is one pixel shorter on that side).

    >>> conv = MatmulGradConv2d(4, 8, 3, padding=1, pooled=True)
    >>> conv(torch.zeros(2, 4, 7, 7)).shape, conv.eval()(torch.zeros(2, 4, 7, 7)).shape
    (torch.Size([2, 8, 6, 6]), torch.Size([2, 8, 7, 7]))
    """

    max_pixels = 16

    def __init__(self, *args: Any, pooled: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pooled = bool(pooled)

    def extra_repr(self) -> str:
        base: str = super().extra_repr()  # type: ignore[no-untyped-call]
        return base + (", pooled=True" if self.pooled else "")

    def _pool_crop(self, x: torch.Tensor) -> tuple[int, int] | None:
        """``(rows, cols)`` the 2x2 floor-mode pool after this layer drops (0 or 1 each), or None: compute all."""
        if not (
            self.pooled and self.training and isinstance(x, torch.Tensor) and x.ndim == 4
            and not torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
            and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling()
            and self.kernel_size == (3, 3) and self.stride == (1, 1) and self.padding == (1, 1)
            and self.dilation == (1, 1) and self.padding_mode == "zeros"
        ):  # fmt: skip
            return None
        rows, cols = x.shape[-2] % 2, x.shape[-1] % 2
        return (rows, cols) if rows or cols else None

    def _matmul_grad_applies(self, x: torch.Tensor) -> bool:
        return (
            self.training and isinstance(x, torch.Tensor) and torch.is_grad_enabled() and self.weight.requires_grad
            and not torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
            and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling()
            and x.ndim == 4 and x.device.type == "cpu"
            and self.kernel_size == (3, 3) and self.stride == (1, 1) and self.padding == (1, 1)
            and self.dilation == (1, 1) and self.groups == 1 and self.padding_mode == "zeros"
            and x.shape[-2] * x.shape[-1] <= self.max_pixels
        )  # fmt: skip

    def _matmul_forward_applies(self, x: torch.Tensor) -> bool:
        return (
            self.in_channels == 1 and isinstance(x, torch.Tensor) and x.ndim == 4 and x.device.type == "cpu"
            and x.dtype == torch.float32 and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
            and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling()
            and self.kernel_size == (3, 3) and self.stride == (1, 1) and self.padding == (1, 1)
            and self.dilation == (1, 1) and self.groups == 1 and self.padding_mode == "zeros"
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._matmul_forward_applies(x):
            return _MatmulConv1.apply(x, self.weight, self.bias)  # type: ignore[no-any-return,no-untyped-call]
        if not self._matmul_grad_applies(x):
            crop = self._pool_crop(x)
            if crop is None:
                return super().forward(x)
            rows, cols = crop  # pad top/left by 1, bottom/right by 1 only where nothing is dropped
            xp = F.pad(x, (1, 1 - cols, 1, 1 - rows))
            return F.conv2d(xp, self.weight, self.bias, 1, 0, 1, self.groups)
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled("cpu"):  # cast like autocast would for a convolution, then run as is
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = _autocast(x, dtype), _autocast(weight, dtype)
            bias = _autocast(bias, dtype) if bias is not None else None
            with torch.autocast("cpu", enabled=False):
                out: torch.Tensor = _MatmulGradConv.apply(x, weight, bias)  # type: ignore[no-untyped-call]
            return out
        out = _MatmulGradConv.apply(x, weight, bias)  # type: ignore[no-untyped-call]
        return out
