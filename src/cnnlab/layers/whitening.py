"""Patch whitening: first-layer filters computed from the data (airbench's whitened, frozen first layer).

The covariance of the ``k x k`` patches of the training images has eigenvectors ``v_i`` and
eigenvalues ``l_i``. The filter ``v_i / sqrt(l_i + eps)`` turns a patch into its ``i``-th principal
component with unit variance: the first layer then hands the network decorrelated, equally scaled
features from the first step on, and it need not be trained (Keller Jordan's airbench; Coates & Ng
2011 for patch whitening in convolutional features). Each eigenvector is used with both signs, so a
ReLU downstream keeps both halves of the component.

>>> w = patch_whitening(torch.randn(64, 1, 8, 8), kernel_size=3, out_channels=16)
>>> w.shape
torch.Size([16, 1, 3, 3])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["patch_whitening"]


@torch.no_grad()
def patch_whitening(
    images: torch.Tensor, kernel_size: int, out_channels: int, *, eps: float = 1e-2, chunk: int = 1000
) -> torch.Tensor:
    """Filters ``(out_channels, C, k, k)``: the top ``out_channels / 2`` whitened principal components, +/-.

    ``images`` are normalised ``(N, C, H, W)`` images (the training split, never validation or test).
    Patches are taken with zero padding as a ``padding="same"`` convolution sees them (``(k - 1) // 2``
    before, ``k // 2`` after: one patch per pixel, for even kernels too), in
    chunks of ``chunk`` images so that memory stays at one chunk's patches. An odd ``out_channels``
    adds the next component with a plus sign only. At most ``2 * C * k * k`` filters exist.
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(
            f"patch_whitening: images must be a (N, C, H, W) batch with N >= 1; received shape "
            f"{tuple(images.shape)}. Pass normalised training images, e.g. normalize(train.images[:5000], mean, std)."
        )
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(
            f"patch_whitening: kernel_size must be a positive int (the first layer's square kernel); received "
            f"kernel_size={kernel_size!r}. Use the first convolution's kernel, e.g. kernel_size=3."
        )
    dims = images.shape[1] * kernel_size * kernel_size
    if not 1 <= out_channels <= 2 * dims:
        raise ValueError(
            f"patch_whitening: out_channels must be between 1 and 2 x C x k x k = {2 * dims} (each of the {dims} "
            f"principal components of a {kernel_size}x{kernel_size} patch, with both signs); received "
            f"out_channels={out_channels}. Use a narrower first layer or a larger kernel."
        )
    total = torch.zeros(dims, dtype=torch.float64)
    outer = torch.zeros(dims, dims, dtype=torch.float64)
    count = 0
    before, after = (kernel_size - 1) // 2, kernel_size // 2
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float32)
        # 'same' zero padding, TensorFlow's split: an even kernel pads one more on the right/bottom
        x = F.pad(x, (before, after, before, after))
        patches = F.unfold(x, kernel_size)  # (n, dims, H*W): one patch per output pixel
        total += patches.sum((0, 2), dtype=torch.float64)  # float32 within a chunk, float64 across chunks
        outer += torch.bmm(patches, patches.transpose(1, 2)).sum(0, dtype=torch.float64)
        count += patches.shape[0] * patches.shape[2]
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    eigenvalues, vectors = torch.linalg.eigh(cov)  # ascending
    order = eigenvalues.argsort(descending=True)
    eigenvalues, vectors = eigenvalues[order].clamp_min(0), vectors[:, order]
    pairs = (out_channels + 1) // 2
    filters = (vectors[:, :pairs] / torch.sqrt(eigenvalues[:pairs] + eps)).T  # (pairs, dims)
    signed = torch.stack([filters, -filters], 1).reshape(2 * pairs, dims)[:out_channels]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    return signed.reshape(out_channels, images.shape[1], kernel_size, kernel_size).to(dtype)
