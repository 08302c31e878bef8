"""Fixed edge-detection filters as a frozen convolution layer.

:data:`EDGE_KERNELS` is cnnlab's one table of the classic 3x3 kernels (other packages import it). The
kernels are used as PyTorch uses weights, by cross-correlation (no flip), so the seeds' reading holds:
with ``vertical = [[1, 0, -1]] * 3`` a bright region left of a dark one gives positive values, a dark
one left of a bright one negative values. The ``*_y`` and ``horizontal`` kernels are the transposes of
the ``*_x`` and ``vertical`` ones (bright above dark gives positive values). The seeds' vertical kernel
is exactly Prewitt's x kernel; Sobel and Scharr put more weight on the middle row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cnnlab.layers.conv import Conv2d

__all__ = ["EDGE_KERNELS", "EdgeFilter2d"]

_VERTICAL = ((1.0, 0.0, -1.0), (1.0, 0.0, -1.0), (1.0, 0.0, -1.0))
_SOBEL = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
_SCHARR = ((3.0, 0.0, -3.0), (10.0, 0.0, -10.0), (3.0, 0.0, -3.0))
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))

Kernel = tuple[tuple[float, ...], ...]


def _transpose(k: Kernel) -> Kernel:
    return tuple(tuple(row) for row in zip(*k))


# name -> 3x3 kernel (rows top to bottom)
EDGE_KERNELS: dict[str, Kernel] = {
    "vertical": _VERTICAL,  # the seeds' vertical-edge kernel
    "horizontal": _transpose(_VERTICAL),  # the seeds' [[1, 1, 1], [0, 0, 0], [-1, -1, -1]]
    "sobel_x": _SOBEL,
    "sobel_y": _transpose(_SOBEL),
    "scharr_x": _SCHARR,
    "scharr_y": _transpose(_SCHARR),
    "prewitt_x": _VERTICAL,
    "prewitt_y": _transpose(_VERTICAL),
    "laplacian": _LAPLACIAN,
}


def _kinds(kind: str | Sequence[str]) -> tuple[str, ...]:
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    unknown = [k for k in kinds if k not in EDGE_KERNELS]
    if not kinds or unknown:
        raise ValueError(
            f"EdgeFilter2d: kind must be one of {', '.join(EDGE_KERNELS)} (or a non-empty list of them); "
            f"received kind={kind!r}. Use e.g. kind='sobel_x' or kind=['vertical', 'horizontal']."
        )
    return kinds


class EdgeFilter2d(Conv2d):
    """A frozen 3x3 convolution applying :data:`EDGE_KERNELS` to every input channel separately.

    ``kind`` is one kernel name or a list of them; the output has ``in_channels * len(kind)`` maps,
    map ``c * len(kind) + j`` being kernel ``j`` on input channel ``c`` (a grouped convolution, no
    bias). The weight is a parameter with ``requires_grad=False``: it is in ``state_dict`` and moves
    with ``.to()``, but an optimiser never changes it. ``padding`` and ``padding_mode`` are
    :class:`Conv2d`'s (default 0: an ``H x W`` image gives ``(H-2) x (W-2)`` responses).

    >>> step = torch.zeros(1, 1, 6, 6); step[..., :3] = 10.0  # bright left half, dark right half
    >>> EdgeFilter2d("vertical")(step)[0, 0, 0].tolist()
    [0.0, 30.0, 30.0, 0.0]
    """

    def __init__(
        self,
        kind: str | Sequence[str],
        in_channels: int = 1,
        *,
        padding: Any = 0,
        padding_mode: str = "zeros",
    ) -> None:
        kinds = _kinds(kind)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(
                f"EdgeFilter2d: in_channels must be a positive int (each channel is filtered on its own); "
                f"received in_channels={in_channels!r}. Use in_channels=1 for gray images, 3 for RGB."
            )
        self.kinds = kinds
        super().__init__(
            in_channels,
            in_channels * len(kinds),
            3,
            padding=padding,
            groups=in_channels,
            bias=False,
            padding_mode=padding_mode,
        )
        self.weight.requires_grad_(False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Write the fixed kernels (nn.Conv2d's constructor calls this; so may a user's re-init)."""
        kinds = getattr(self, "kinds", None)
        if kinds is None:  # called by nn.Conv2d.__init__ before the kernels are known
            return
        bank = torch.tensor([EDGE_KERNELS[k] for k in kinds], dtype=self.weight.dtype)  # (K, 3, 3)
        groups = self.in_channels
        # (K, 3, 3) -> (in*K, 1, 3, 3): the same K kernels for every input channel
        weight = bank.unsqueeze(1).repeat(groups, 1, 1, 1)
        with torch.no_grad():
            self.weight.copy_(weight.to(self.weight.device))

    def extra_repr(self) -> str:
        return f"kind={list(self.kinds)}, " + super().extra_repr()
