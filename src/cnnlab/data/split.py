"""Validation data carved out of the training split, deterministically.

The test split is kept for the final number only; model selection uses a validation set drawn from
the training split with a seeded permutation, stratified by class so small classes are represented.
"""

from __future__ import annotations

import torch

from cnnlab.data.dataset import ImageDataset


def split_train_val(
    ds: ImageDataset, val_fraction: float, seed: int = 0
) -> tuple[ImageDataset, ImageDataset]:
    """Split ``ds`` into disjoint ``(train, val)`` parts; the same seed gives the same split.

    Each class contributes ``round(val_fraction * count)`` samples to validation (stratified), so
    the class balance of both parts follows ``ds``. Both parts keep the original sample order.

    >>> ds = ImageDataset(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10) % 2, ["a", "b"], "t")
    >>> train, val = split_train_val(ds, 0.2, seed=0)
    >>> len(train), len(val), val.class_counts().tolist()
    (8, 2, [1, 1])
    """
    if not isinstance(val_fraction, float | int) or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(
            f"val_fraction must be a number strictly between 0 and 1 (the share of the training split "
            f"held out for validation); received val_fraction={val_fraction!r}. Use e.g. 0.1."
        )
    generator = torch.Generator().manual_seed(int(seed))
    val_parts = []
    for cls in range(ds.num_classes):
        members = torch.nonzero(ds.labels == cls).flatten()  # positions of this class, (n_c,)
        n_val = round(float(val_fraction) * members.numel())
        order = torch.randperm(members.numel(), generator=generator)
        val_parts.append(members[order[:n_val]])
    val_index = torch.cat(val_parts).sort().values if val_parts else torch.zeros(0, dtype=torch.int64)
    if val_index.numel() == 0 or val_index.numel() == len(ds):
        part, fix = ("none", "a larger val_fraction") if val_index.numel() == 0 else ("all", "a smaller val_fraction")
        raise ValueError(
            f"val_fraction={val_fraction} puts {part} of the {len(ds)} training samples of {ds.name!r} into "
            f"validation (each class gives round(val_fraction * its count), per class "
            f"{ds.class_counts().tolist()}); both parts must be non-empty. Use {fix} or more images."
        )
    is_val = torch.zeros(len(ds), dtype=torch.bool)
    is_val[val_index] = True
    train_index = torch.nonzero(~is_val).flatten()
    return ds.subset(train_index, name=ds.name), ds.subset(val_index, name=ds.name)
