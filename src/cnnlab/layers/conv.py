"""Convolutions with every padding PyTorch has, plus TensorFlow's 'same' for any stride and even kernels.

``Conv1d``/``Conv2d``/``Conv3d`` are ``torch.nn`` convolutions (subclasses: ``isinstance(m, nn.Conv2d)``
holds, weights and ``state_dict`` keys are torch's) that also accept

* ``padding="same"`` at any stride: the output has ``ceil(n / s)`` units per axis and an odd total
  padding puts the extra pixel on the right/bottom (TensorFlow's rule, :func:`cnnlab.arith.same_padding`);
* ``padding`` as per-axis ``(left, right)`` pairs, e.g. ``((0, 1), (0, 1))``;
* any ``padding_mode`` ("zeros", "reflect", "replicate", "circular") with all of the above.

Whatever can be said with PyTorch's own arguments is passed to ``nn.ConvNd`` unchanged (symmetric
padding stays an int tuple, stride-1 'same' stays ``"same"``), so such a layer *is* a plain torch
convolution. Only asymmetric explicit pairs and strided 'same' pad in ``forward`` with ``F.pad``;
strided 'same' computes its padding from the input size at every call, as TensorFlow does.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.arith import same_padding
from cnnlab.arith._norm import Pair, to_pairs, to_tuple

__all__ = [
    "PADDING_MODES", "Conv1d", "Conv2d", "Conv3d", "check_groups", "check_pad_fits", "check_padding_mode", "pad_arg",
    "same_pad",
]  # fmt: skip

# torch's padding_mode -> F.pad's mode
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def check_padding_mode(padding_mode: object, owner: str) -> str:
    """``padding_mode`` if it is one of :data:`PADDING_MODES`, else a ``ValueError`` naming the choices."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{owner}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}; received "
            f"padding_mode={padding_mode!r}. Use padding_mode='zeros' for zero padding."
        )
    return str(padding_mode)


def pad_arg(pairs: tuple[Pair, ...]) -> tuple[int, ...]:
    """Per-axis ``(left, right)`` pairs (first spatial axis first) as ``F.pad``'s flat tuple (last axis first)."""
    # ((top, bottom), (left, right)) -> (left, right, top, bottom)
    return tuple(v for pair in reversed(pairs) for v in pair)


class _PaddingPlan:
    """How a conv realises its padding: torch's own argument, a fixed ``F.pad``, or per-call 'same'."""

    def __init__(self, padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]):
        nd = len(kernel)
        self.dynamic_same = False
        self.fixed: tuple[Pair, ...] | None = None  # asymmetric pairs padded in forward
        self.torch_padding: Any
        if isinstance(padding, str):
            if padding == "valid":
                self.torch_padding = (0,) * nd
            elif padding == "same" and all(s == 1 for s in stride):
                # stride 1: total = d(k-1), independent of the input size; torch splits it as TF does
                pairs = same_padding((1,) * nd, kernel, 1, dilation)
                symmetric = all(left == right for left, right in pairs)
                self.torch_padding = tuple(left for left, _ in pairs) if symmetric else "same"
            elif padding == "same":
                self.torch_padding = (0,) * nd
                self.dynamic_same = True
            else:
                raise ValueError(
                    f"padding must be an int, a tuple, per-axis (left, right) pairs, 'same' or 'valid'; "
                    f"received padding={padding!r}. Use e.g. padding=1 or padding='same'."
                )
            return
        pairs = to_pairs(padding, nd, "padding")
        if all(left == right for left, right in pairs):
            self.torch_padding = tuple(left for left, _ in pairs)
        else:
            self.torch_padding = (0,) * nd
            self.fixed = pairs


def _padding_pairs(conv: nn.modules.conv._ConvNd, input_size: tuple[int, ...]) -> tuple[Pair, ...]:
    """(left, right) per spatial axis that ``conv`` (one of this module's convs) applies to ``input_size``."""
    k, s, d = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.dilation)
    if getattr(conv, "dynamic_same", False):
        return same_padding(tuple(int(n) for n in input_size), k, s, d)
    fixed: tuple[Pair, ...] | None = getattr(conv, "fixed_pairs", None)
    if fixed is not None:
        return fixed
    if conv.padding == "same":
        return same_padding((1,) * len(k), k, 1, d)
    return tuple((int(p), int(p)) for p in conv.padding)


def check_pad_fits(pairs: tuple[Pair, ...], size: tuple[int, ...], mode: str, owner: str, what: str) -> None:
    """``F.pad`` pads 'reflect' only by less than the size and 'circular' by at most the size: say so in our terms.

    ``mode`` is ``F.pad``'s; ``what`` names the padding (e.g. "'same' padding at stride (2, 2)").

    >>> check_pad_fits(((1, 1),), (2,), "reflect", "Conv1d", "padding=1")  # 1 < 2: fine, returns None
    """
    if mode not in ("reflect", "circular"):
        return
    names = ("D", "H", "W")[-len(size) :] if len(size) > 1 else ("L",)
    for axis, (left, right), n in zip(names, pairs, size):
        pad = max(left, right)
        if (mode == "reflect" and pad >= n) or (mode == "circular" and pad > n):
            rule = "smaller than" if mode == "reflect" else "at most"
            raise ValueError(
                f"{owner}: padding_mode {mode!r} needs padding {rule} the input along {axis}; {what} pads "
                f"an input of spatial size {tuple(size)} by {pad} along that axis. Use a larger input, less "
                "padding, or padding_mode 'zeros' / 'replicate'."
            )


def same_pad(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    mode: str,
    owner: str = "same_pad",
) -> torch.Tensor:
    """Pad ``x`` by TensorFlow's 'same' rule for its own spatial size (``mode`` as ``F.pad`` takes it).

    Registered with ``torch.fx.wrap``: the size is only known at run time, so a symbolic trace keeps
    this call as one node instead of failing on the unknown shape.

    >>> same_pad(torch.zeros(1, 1, 4, 5), (3, 3), (2, 2), (1, 1), "constant").shape
    torch.Size([1, 1, 5, 7])
    """
    nd = len(kernel)
    size = tuple(int(n) for n in x.shape[-nd:])
    pairs = same_padding(size, kernel, stride, dilation)
    check_pad_fits(pairs, size, mode, owner, f"'same' padding at stride {tuple(stride)}")
    return F.pad(x, pad_arg(pairs), mode=mode)


torch.fx.wrap("same_pad")


def _forward(conv: nn.modules.conv._ConvNd, x: torch.Tensor, torch_forward: Any) -> torch.Tensor:
    """``torch_forward(x)`` when torch's padding says it all, else ``F.pad`` then an unpadded convolution."""
    mode = PADDING_MODES[conv.padding_mode]
    fixed: tuple[Pair, ...] | None = getattr(conv, "fixed_pairs", None)
    if getattr(conv, "dynamic_same", False):
        owner = type(conv).__name__
        x = same_pad(x, tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.dilation), mode, owner)
    elif fixed is not None:
        if mode in ("reflect", "circular") and isinstance(x, torch.Tensor):  # a torch.fx Proxy has no size
            size = tuple(int(n) for n in x.shape[-len(fixed) :])
            check_pad_fits(fixed, size, mode, type(conv).__name__, f"padding={fixed}")
        x = F.pad(x, pad_arg(fixed), mode=mode)
    else:
        out: torch.Tensor = torch_forward(x)
        return out
    fn = (F.conv1d, F.conv2d, F.conv3d)[len(conv.kernel_size) - 1]
    out = fn(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)
    return out


def _padding_repr(conv: nn.modules.conv._ConvNd) -> str:
    if getattr(conv, "dynamic_same", False):
        return ", padding='same' (per call, TensorFlow rule)"
    fixed = getattr(conv, "fixed_pairs", None)
    return f", padding={fixed}" if fixed is not None else ""


def check_groups(in_channels: int, out_channels: int, groups: int, owner: str) -> None:
    """``groups`` is a positive int dividing both channel counts, else one ``ValueError`` saying which.

    >>> check_groups(4, 6, 2, "Conv2d")  # 4 and 6 are both even: fine, returns None
    """
    bad_in = isinstance(groups, int) and groups >= 1 and in_channels % groups != 0
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or bad_in or out_channels % groups:
        raise ValueError(
            f"{owner}: groups must be a positive int that divides both in_channels and out_channels (each group "
            f"maps in_channels/groups inputs to out_channels/groups outputs); received groups={groups!r} with "
            f"in_channels={in_channels}, out_channels={out_channels}. Use groups=1 or a common divisor of both."
        )


def _plan(owner: str, nd: int, kernel_size: Any, stride: Any, padding: Any, dilation: Any, mode: str) -> _PaddingPlan:
    check_padding_mode(mode, owner)
    return _PaddingPlan(
        padding,
        to_tuple(kernel_size, nd, "kernel_size", minimum=1),
        to_tuple(stride, nd, "stride", minimum=1),
        to_tuple(dilation, nd, "dilation", minimum=1),
    )


class _TFPadding:
    """What Conv1d/2d/3d add to ``nn.ConvNd``: plan the padding, then pad in ``forward`` where torch cannot."""

    _nd: int  # spatial dimensions of the torch class this is mixed into

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        plan = _plan(type(self).__name__, self._nd, kernel_size, stride, padding, dilation, padding_mode)
        check_groups(in_channels, out_channels, groups, type(self).__name__)
        super().__init__(  # type: ignore[call-arg]  # nn.ConvNd, next in the MRO
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=plan.torch_padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self.dynamic_same = plan.dynamic_same  # 'same' at stride > 1: padding depends on the input size
        self.fixed_pairs = plan.fixed  # asymmetric explicit (left, right) pairs, or None

    def padding_pairs(self, input_size: tuple[int, ...]) -> tuple[Pair, ...]:
        """The (left, right) padding per spatial axis applied to an input of spatial size ``input_size``."""
        return _padding_pairs(self, input_size)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _forward(self, x, super().forward)  # type: ignore[arg-type, misc]

    def extra_repr(self) -> str:
        return str(super().extra_repr()) + _padding_repr(self)  # type: ignore[misc, arg-type]


class Conv1d(_TFPadding, nn.Conv1d):
    """``nn.Conv1d`` with 'same' at any stride and (left, right) padding pairs (see :class:`Conv2d`).

    >>> Conv1d(1, 2, 4, stride=3, padding="same")(torch.zeros(1, 1, 10)).shape
    torch.Size([1, 2, 4])
    """

    _nd = 1


class Conv2d(_TFPadding, nn.Conv2d):
    """``nn.Conv2d`` whose ``padding`` also takes 'same' at any stride and per-axis (left, right) pairs.

    ``padding="same"`` gives ``ceil(n / s)`` outputs per axis for any kernel (even ones too) and any
    stride: total padding ``max((ceil(n/s) - 1)*s + d(k-1) + 1 - n, 0)``, ``left = total // 2``,
    ``right = total - left`` (TensorFlow). Symmetric cases are a plain ``nn.Conv2d`` padding.
    ``padding_mode`` is torch's ("zeros", "reflect", "replicate", "circular") and applies to all of them.
    ``padding_pairs(input_size)`` tells the (left, right) padding actually applied per axis.

    >>> Conv2d(3, 8, 4, stride=2, padding="same")(torch.zeros(1, 3, 7, 7)).shape
    torch.Size([1, 8, 4, 4])
    >>> Conv2d(3, 8, 3, padding="same").padding
    (1, 1)
    >>> Conv2d(1, 1, 3, stride=2, padding="same").padding_pairs((8, 7))
    ((0, 1), (1, 1))
    """

    _nd = 2


class Conv3d(_TFPadding, nn.Conv3d):
    """``nn.Conv3d`` with 'same' at any stride and (left, right) padding pairs (see :class:`Conv2d`).

    >>> Conv3d(1, 2, 2, stride=2, padding="same")(torch.zeros(1, 1, 5, 5, 5)).shape
    torch.Size([1, 2, 3, 3, 3])
    """

    _nd = 3
