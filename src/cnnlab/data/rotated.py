"""``rot-<name>``: a dataset whose images are randomly rotated, for equivariance experiments.

Every image of the chosen split is rotated about its centre by its own seeded random angle
(uniform in ``[-max_degrees, max_degrees]``, or a random multiple of 90 degrees with
``rot90_only=True``, which is exact: no interpolation). The angles are kept in
``ds.extras["angle"]`` (degrees, float32) so an experiment can relate predictions to rotation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.data.augment import draw_angles, draw_quarter_turns, rot90, rotate
from cnnlab.data.dataset import ImageDataset

CHUNK = 4096  # images rotated at once, to bound the float copy


def rotate_dataset(
    ds: ImageDataset, *, seed: int = 0, max_degrees: float = 180.0, rot90_only: bool = False
) -> ImageDataset:
    """A copy of ``ds`` with each image (and mask) rotated by a seeded random angle.

    >>> ds = ImageDataset(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64),
    ...                   ["a"], "toy")
    >>> rotate_dataset(ds, seed=1, rot90_only=True).extras["angle"].tolist()  # doctest: +SKIP
    [270.0, 0.0, 90.0]
    """
    if not 0.0 <= max_degrees <= 180.0:
        raise ValueError(
            f"rot: max_degrees must be between 0 and 180; received max_degrees={max_degrees}."
        )
    n = len(ds)
    g = torch.Generator().manual_seed(int(seed))
    if rot90_only:
        if ds.images.shape[-1] != ds.images.shape[-2]:
            raise ValueError(
                f"rot: rot90_only needs square images; {ds.name!r} has H x W = "
                f"{ds.images.shape[-2]} x {ds.images.shape[-1]}. Use arbitrary angles instead."
            )
        turns = draw_quarter_turns(n, g)
        images = rot90(ds.images, turns)
        masks = None if ds.masks is None else rot90(ds.masks[:, None], turns)[:, 0]
        angles = turns.to(torch.float32) * 90.0
    else:
        angles = draw_angles(n, max_degrees, g)
        chunks = range(0, n, CHUNK)
        images = torch.cat([rotate(ds.images[i : i + CHUNK], angles[i : i + CHUNK]) for i in chunks])
        masks = None
        if ds.masks is not None:
            # Class ids must not be interpolated: rotate them with nearest-neighbour sampling.
            parts = [
                rotate(ds.masks[i : i + CHUNK, None].float(), angles[i : i + CHUNK], mode="nearest")
                for i in chunks
            ]
            masks = torch.cat(parts)[:, 0].round().to(torch.int64)
    extras = dict(ds.extras)
    extras["angle"] = angles
    name = f"rot-{ds.name}"
    return ImageDataset(images, ds.labels.clone(), list(ds.classes), name, masks=masks, extras=extras)


def load_rotated(
    base: str,
    split: str = "test",
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    max_degrees: float = 180.0,
    rot90_only: bool = False,
    **opts: Any,
) -> ImageDataset:
    """Load ``base`` (any dataset name) and rotate it; ``opts`` go to the base loader.

    >>> load_rotated("shapes", "test", n=4, size=32, rot90_only=True).name
    'rot-shapes'
    """
    from cnnlab.data import check_base_name, load_dataset

    check_base_name(base)
    ds = load_dataset(base, split, data_dir, **opts)
    # Different streams for the two splits, so test rotations are not the training rotations.
    split_seed = 2 * int(seed) + (1 if split == "test" else 0)
    return rotate_dataset(ds, seed=split_seed, max_degrees=max_degrees, rot90_only=rot90_only)
