"""Batched data augmentation on whole tensors ``(B, C, H, W)``, seeded through a ``torch.Generator``.

Each random augmentation is split in two: drawing the random parameters (``draw_*``, on the CPU
generator) and applying them (pure tensor functions). The split lets a segmentation loop apply the
very same flips, shifts and rotations to the masks, and keeps the results reproducible: the same
generator state gives the same batch on any device.

>>> g = torch.Generator().manual_seed(0)
>>> x = torch.rand(8, 1, 28, 28)
>>> y = random_crop(hflip(x, generator=g), padding=2, generator=g)
>>> y.shape
torch.Size([8, 1, 28, 28])
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


def _check_batch(x: torch.Tensor, fn: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{fn}: x must be a torch.Tensor batch (B, C, H, W); received {type(x).__module__}.{type(x).__name__}. "
            "Convert it first, e.g. x = torch.from_numpy(array) for a NumPy array."
        )
    if x.ndim != 4:
        raise ValueError(
            f"{fn}: x must be a batch of images (B, C, H, W); received a tensor of shape "
            f"{tuple(x.shape)}. Add the batch axis with x.unsqueeze(0) (and masks (B, H, W) with "
            "m.unsqueeze(1))."
        )


def _per_sample(value: Any, name: str, fn: str, b: int, trailing: tuple[int, ...], device: Any) -> torch.Tensor:
    """``value`` (a tensor, or a sequence/array turned into one) with shape ``(b, *trailing)`` on ``device``."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{fn}: {name} must be a tensor or a sequence of numbers of shape {(b, *trailing)}; received "
                f"{type(value).__name__} {value!r:.60}."
            ) from None
    if tuple(value.shape) != (b, *trailing):
        raise ValueError(
            f"{fn}: {name} must have shape {(b, *trailing)}, one entry per sample of the batch of {b}; received "
            f"shape {tuple(value.shape)}. Draw it for this batch, e.g. with the draw_* function and x.shape[0]."
        )
    out: torch.Tensor = value.to(device)
    return out


def _check_probability(p: float, fn: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fn}: p must be a probability in [0, 1]; received p={p}.")


# -- horizontal flip -------------------------------------------------------------------------------


def draw_flips(n: int, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Which of ``n`` samples to flip: bool ``(n,)``, each True with probability ``p``."""
    _check_probability(p, "draw_flips")
    return torch.rand(n, generator=generator) < p


def flip(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Mirror the samples selected by the bool tensor ``which`` ``(B,)`` along the width axis.

    >>> x = torch.arange(4.).view(1, 1, 1, 4)
    >>> flip(x, torch.tensor([True])).flatten().tolist()
    [3.0, 2.0, 1.0, 0.0]
    """
    _check_batch(x, "flip")
    which = _per_sample(which, "which", "flip", x.shape[0], (), x.device)
    if which.dtype != torch.bool:
        raise TypeError(
            f"flip: which must be a bool tensor (True = flip that sample); received dtype {which.dtype}. "
            "Use e.g. which.bool() or draw_flips(x.shape[0])."
        )
    return torch.where(which.view(-1, 1, 1, 1), x.flip(-1), x)  # (B,) -> (B, 1, 1, 1) to broadcast


def hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random horizontal flip (width axis, ``x.flip(-1)``) of each sample with probability ``p``.

    >>> hflip(torch.zeros(2, 3, 4, 4), p=1.0).shape
    torch.Size([2, 3, 4, 4])
    """
    _check_batch(x, "hflip")
    return flip(x, draw_flips(x.shape[0], p, generator))


# -- translation / random crop ---------------------------------------------------------------------


def draw_shifts(n: int, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Integer shifts ``(n, 2)`` (dy, dx), each uniform in ``[-max_shift, max_shift]``."""
    if max_shift < 0:
        raise ValueError(f"draw_shifts: max_shift must be >= 0 pixels; received max_shift={max_shift}.")
    return torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)


def translate(x: torch.Tensor, shifts: torch.Tensor | Sequence[Sequence[int]], fill: float = 0) -> torch.Tensor:
    """Shift sample ``b`` down by ``shifts[b, 0]`` and right by ``shifts[b, 1]`` pixels.

    ``out[b, :, i, j] = x[b, :, i - dy, j - dx]`` where that pixel exists, else ``fill``.
    Vectorised with two ``gather`` calls on a padded copy, no loop over samples.

    >>> x = torch.arange(1., 5.).view(1, 1, 2, 2)
    >>> translate(x, torch.tensor([[1, 0]]))[0, 0].tolist()
    [[0.0, 0.0], [1.0, 2.0]]
    """
    _check_batch(x, "translate")
    b, c, h, w = x.shape
    shifts = _per_sample(shifts, "shifts", "translate", b, (2,), x.device)  # (B, 2): (dy, dx)
    fractional = shifts != shifts.round() if shifts.is_floating_point() else None  # inf and nan count too
    if fractional is not None and bool((fractional | ~torch.isfinite(shifts)).any()):
        bad = shifts[fractional | ~torch.isfinite(shifts)][0].item()
        raise ValueError(
            f"translate: shifts must be whole pixels; received a shift of {bad:g}. Round the shifts first "
            f"(e.g. shifts.round()), or use draw_shifts, which draws integers."
        )
    shifts = shifts.to(torch.int64)
    pad = int(shifts.abs().max()) if shifts.numel() else 0
    if pad == 0:
        return x.clone()
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)  # (B, C, H+2p, W+2p)
    rows = torch.arange(h, device=x.device) + pad - shifts[:, :1]  # (B, H): source row of each output row
    cols = torch.arange(w, device=x.device) + pad - shifts[:, 1:]  # (B, W)
    rows = rows.clamp(0, h + 2 * pad - 1).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    out = padded.gather(2, rows)  # (B, C, H, W+2p)
    cols = cols.clamp(0, w + 2 * pad - 1).view(b, 1, 1, w).expand(b, c, h, w)
    return out.gather(3, cols)  # (B, C, H, W)


def random_crop(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random ``H x W`` crop of each sample zero-padded by ``padding`` (= a random translation).

    >>> random_crop(torch.ones(3, 1, 8, 8), padding=2).shape
    torch.Size([3, 1, 8, 8])
    """
    _check_batch(x, "random_crop")
    return translate(x, draw_shifts(x.shape[0], padding, generator))


# -- cutout (random erasing) -----------------------------------------------------------------------


def cutout(
    x: torch.Tensor,
    size: int,
    generator: torch.Generator | None = None,
    *,
    p: float = 1.0,
    value: float = 0,
) -> torch.Tensor:
    """Erase one ``size x size`` square per sample (with probability ``p``), set to ``value``.

    The square lies wholly inside the image (its top-left corner is uniform over the valid
    positions), so exactly ``size * size`` pixels per channel are erased (DeVries & Taylor 2017).

    >>> (cutout(torch.ones(2, 1, 8, 8), 3) == 0).sum().item()
    18
    """
    _check_batch(x, "cutout")
    _check_probability(p, "cutout")
    b, _, h, w = x.shape
    if not 1 <= size <= min(h, w):
        raise ValueError(
            f"cutout: size must be between 1 and the image side {min(h, w)}; received size={size}."
        )
    top = torch.randint(0, h - size + 1, (b, 1), generator=generator).to(x.device)
    left = torch.randint(0, w - size + 1, (b, 1), generator=generator).to(x.device)
    apply = (torch.rand(b, 1, generator=generator) < p).to(x.device)
    r = torch.arange(h, device=x.device)
    cc = torch.arange(w, device=x.device)
    in_rows = (r >= top) & (r < top + size) & apply  # (B, H)
    in_cols = (cc >= left) & (cc < left + size)  # (B, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)  # (B, 1, H, W)
    return x.masked_fill(mask, value)


# -- mixup -----------------------------------------------------------------------------------------


class Mixup(NamedTuple):
    """A mixed batch: ``inputs = lam * x + (1 - lam) * x[perm]``, targets of both halves."""

    inputs: torch.Tensor
    targets_a: torch.Tensor
    targets_b: torch.Tensor
    lam: float

    def loss(self, criterion: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
        """``lam * criterion(logits, a) + (1 - lam) * criterion(logits, b)`` (Zhang et al. 2018)."""
        loss_a: torch.Tensor = criterion(logits, self.targets_a)
        loss_b: torch.Tensor = criterion(logits, self.targets_b)
        return self.lam * loss_a + (1 - self.lam) * loss_b

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """The mixed one-hot targets, float ``(B, num_classes)``."""
        a = F.one_hot(self.targets_a, num_classes).float()
        b = F.one_hot(self.targets_b, num_classes).float()
        return self.lam * a + (1 - self.lam) * b


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float = 0.2, generator: torch.Generator | None = None
) -> Mixup:
    """Mix each sample with a random partner of the batch, ``lam ~ Beta(alpha, alpha)``.

    >>> g = torch.Generator().manual_seed(0)
    >>> m = mixup(torch.rand(4, 1, 8, 8), torch.arange(4), alpha=0.4, generator=g)
    >>> 0.0 <= m.lam <= 1.0, m.inputs.shape
    (True, torch.Size([4, 1, 8, 8]))
    """
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        raise TypeError(f"mixup: x must be a batch tensor (B, ...); received {type(x).__name__} {x!r:.60}.")
    if not isinstance(y, torch.Tensor) or y.ndim == 0 or y.shape[0] != x.shape[0]:
        got = f"shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(
            f"mixup: y must be a tensor of targets with one entry per sample, shape ({x.shape[0]}, ...) for this "
            f"batch; received {got}. Pass the targets of the same batch as x."
        )
    if not x.is_floating_point():
        raise ValueError(
            f"mixup: x must be a float tensor (mixing uint8 pixels would round them); received "
            f"dtype={x.dtype}. Normalise the batch to float before mixup."
        )
    if alpha <= 0:
        raise ValueError(f"mixup: alpha must be > 0 (Beta(alpha, alpha)); received alpha={alpha}. Try 0.2.")
    # torch's Beta sampler takes no generator; seed NumPy's from ours so one generator drives everything.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    inputs = lam * x + (1.0 - lam) * x[perm]
    return Mixup(inputs, y, y[perm], lam)


# -- rotations -------------------------------------------------------------------------------------


def rot90(x: torch.Tensor, k: int | torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Rotate counter-clockwise by ``k * 90`` degrees; ``k`` an int (or int-like) or one int per sample ``(B,)``.

    >>> x = torch.rand(2, 1, 5, 5)
    >>> torch.equal(rot90(rot90(x, 3), 1), x)
    True
    """
    _check_batch(x, "rot90")
    if not isinstance(k, torch.Tensor) or k.ndim == 0:
        try:
            quarters = operator.index(k)  # type: ignore[arg-type]  # int, NumPy integer, 0-d integer tensor
        except TypeError:
            quarters = None
        if quarters is not None:
            return torch.rot90(x, quarters % 4, dims=(-2, -1))
        if isinstance(k, torch.Tensor | str | bytes) or not hasattr(k, "__len__"):
            raise TypeError(
                f"rot90: k must be an int or one int per sample ({x.shape[0]},); received {type(k).__name__} "
                f"{k!r:.60}. Use e.g. k=1 or k=draw_quarter_turns(x.shape[0])."
            )
    k = _per_sample(k, "k", "rot90", x.shape[0], (), x.device)  # a sequence or array: one per sample
    if k.is_floating_point() or k.dtype == torch.bool:
        raise TypeError(f"rot90: k must hold integers (quarter turns); received dtype {k.dtype}. Use k.long().")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"rot90: per-sample rotations need square images; received H x W = {x.shape[-2]} x "
            f"{x.shape[-1]}. Pass one int k for the whole batch instead."
        )
    k = k.remainder(4)
    out = x.clone()
    for quarter in (1, 2, 3):  # four cases, not a loop over samples
        sel = k == quarter
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], quarter, dims=(-2, -1))
    return out


def draw_quarter_turns(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random ``k`` in {0, 1, 2, 3} per sample, int64 ``(n,)``."""
    return torch.randint(0, 4, (n,), generator=generator)


def random_rot90(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each (square) sample by a random multiple of 90 degrees."""
    _check_batch(x, "random_rot90")
    return rot90(x, draw_quarter_turns(x.shape[0], generator))


def rotate(x: torch.Tensor, degrees: torch.Tensor | float | Sequence[float], *, mode: str = "bilinear") -> torch.Tensor:
    """Rotate each sample counter-clockwise about its centre by ``degrees`` (scalar or ``(B,)``).

    Uses ``affine_grid`` + ``grid_sample``; pixels from outside the image are 0. uint8 input is
    rotated in float and rounded back; use ``mode="nearest"`` for masks of class ids.

    >>> x = torch.rand(1, 1, 6, 6)
    >>> torch.allclose(rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    True
    """
    _check_batch(x, "rotate")
    b, _, h, w = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32  # theta's precision
    try:
        if isinstance(degrees, str | bytes):
            raise TypeError
        angles = torch.as_tensor(degrees, dtype=work).flatten().to(x.device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"rotate: degrees must be a number, or a tensor or sequence of {b} numbers; received "
            f"{type(degrees).__name__} {degrees!r:.60}. Use e.g. degrees=30.0 or draw_angles(x.shape[0], 30.0)."
        ) from None
    angles = angles.expand(b) if angles.numel() == 1 else angles
    if angles.shape != (b,):
        raise ValueError(f"rotate: degrees must be a number or {b} numbers; received {angles.numel()}.")
    rad = angles * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # theta maps output to input coordinates, normalised to [-1, 1] per axis; the H/W factors undo
    # that normalisation so non-square images rotate rigidly. Image y points down, so this matrix
    # turns the picture counter-clockwise as seen on screen (like torch.rot90).
    theta = torch.zeros(b, 2, 3, dtype=work, device=x.device)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * (h / w)
    theta[:, 1, 0] = sin * (w / h)
    theta[:, 1, 1] = cos
    xf = x if x.is_floating_point() else x.float()
    grid = F.affine_grid(theta.to(xf.dtype), list(xf.shape), align_corners=False)
    out = F.grid_sample(xf, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if x.is_floating_point():
        return out
    info = torch.iinfo(x.dtype)
    return out.round().clamp(info.min, info.max).to(x.dtype)


def draw_angles(n: int, max_degrees: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Angles ``(n,)`` uniform in ``[-max_degrees, max_degrees]``."""
    return (torch.rand(n, generator=generator) * 2.0 - 1.0) * max_degrees


def random_rotate(
    x: torch.Tensor, max_degrees: float = 180.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each sample by a random angle in ``[-max_degrees, max_degrees]``."""
    _check_batch(x, "random_rotate")
    return rotate(x, draw_angles(x.shape[0], max_degrees, generator))


__all__ = [
    "Mixup",
    "cutout",
    "draw_angles",
    "draw_flips",
    "draw_quarter_turns",
    "draw_shifts",
    "flip",
    "hflip",
    "mixup",
    "random_crop",
    "random_rot90",
    "random_rotate",
    "rot90",
    "rotate",
    "translate",
]
