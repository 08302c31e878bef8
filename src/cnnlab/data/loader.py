"""A fast in-memory batch iterator and per-channel normalisation.

The whole split is one tensor, so a batch is one indexing operation: no per-sample ``Dataset``,
no worker processes, no collation. Shuffling uses a ``torch.Generator`` whose state the training
loop can save and restore for an exact resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch


class TensorLoader:
    """Iterate over aligned tensors (images, labels[, masks]) in batches.

    Every pass (epoch) draws a new permutation from ``generator`` when ``shuffle`` is on. With
    ``world_size > 1`` each rank gets a disjoint shard of every permutation, padded by repetition
    to equal length (like ``DistributedSampler``), so all ranks run the same number of steps.

    >>> loader = TensorLoader(torch.zeros(10, 1, 4, 4), torch.arange(10), batch_size=4, shuffle=False)
    >>> len(loader), [y.tolist() for _, y in loader]
    (3, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not tensors:
            raise ValueError("TensorLoader needs at least one tensor (for example images, labels).")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            sizes = [t.shape[0] for t in tensors]
            raise ValueError(
                f"TensorLoader: all tensors must have the same first dimension; received {sizes}."
            )
        if batch_size < 1:
            raise ValueError(f"TensorLoader: batch_size must be >= 1; received batch_size={batch_size}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"TensorLoader: rank must be in 0..world_size-1; received rank={rank}, "
                f"world_size={world_size}."
            )
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per pass (the shard size)."""
        return math.ceil(self.tensors[0].shape[0] / self.world_size)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self) -> torch.Tensor:
        """The sample order of one pass for this rank (draws from the generator when shuffling)."""
        n = self.tensors[0].shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            total = self.num_samples * self.world_size
            order = torch.cat([order, order[: total - n]])  # pad so every rank has num_samples
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.indices()
        contiguous = not self.shuffle and self.world_size == 1
        for step in range(len(self)):
            lo, hi = step * self.batch_size, min((step + 1) * self.batch_size, order.numel())
            if contiguous:
                yield tuple(t[lo:hi] for t in self.tensors)  # views, no copy
            else:
                idx = order[lo:hi]
                yield tuple(t[idx.to(t.device)] for t in self.tensors)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images ``(N, C, H, W)``, in [0, 1].

    Exact and fast for uint8: a 256-bin histogram per channel gives both moments, so the dataset is
    never copied to float. Float images (already in [0, 1]) use float64 moments instead.

    >>> mean, std = channel_stats(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1))
    >>> mean, std
    ((0.5,), (0.5,))
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            "channel_stats: images must be a non-empty batch (N, C, H, W); received shape "
            f"{tuple(images.shape)}."
        )
    means, stds = [], []
    levels = torch.arange(256, dtype=torch.float64) / 255.0  # value of each uint8 level
    for c in range(images.shape[1]):
        plane = images[:, c].reshape(-1)  # (N*H*W,)
        if images.dtype == torch.uint8:
            hist = torch.bincount(plane, minlength=256).to(torch.float64)  # (256,) pixel counts
            mean = float((hist * levels).sum() / hist.sum())
            var = float((hist * (levels - mean) ** 2).sum() / hist.sum())
        else:
            values = plane.to(torch.float64)
            mean, var = float(values.mean()), float(values.var(unbiased=False))
        means.append(mean)
        stds.append(var**0.5)
    return tuple(means), tuple(stds)


def normalize(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(images / 255 - mean) / std`` per channel, for uint8 (or already float in [0, 1]) images.

    >>> normalize(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), [0.5], [0.5])[0, 0, 0, 0].item()
    1.0
    """
    c = images.shape[-3]
    if len(mean) != c or len(std) != c or any(s <= 0 for s in std):
        raise ValueError(
            f"normalize: mean and std need one value per channel ({c}) and std > 0; received "
            f"mean={list(mean)}, std={list(std)}. Compute them with channel_stats(train.images)."
        )
    x = images.to(dtype)
    if not images.is_floating_point():
        x = x / 255.0
    m = torch.tensor(mean, dtype=dtype, device=images.device).view(c, 1, 1)  # (C,) -> (C, 1, 1)
    s = torch.tensor(std, dtype=dtype, device=images.device).view(c, 1, 1)
    return (x - m) / s
