"""The in-memory dataset every cnnlab source returns.

A whole split lives in one ``uint8`` tensor ``(N, C, H, W)`` plus ``int64`` labels ``(N,)``; the
training loop indexes and augments whole batches of it, with no per-sample ``Dataset`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(eq=False)
class ImageDataset:
    """One split of an image dataset held in memory.

    ``images`` is ``uint8 (N, C, H, W)``; ``labels`` is ``int64 (N,)`` with values in
    ``range(len(classes))``; ``masks`` (segmentation only) is ``int64 (N, H, W)`` with class ids,
    0 being background; ``extras`` holds other per-sample tensors (first dimension N), for
    example the rotation angle of each image of a ``rot-`` dataset.

    >>> ds = ImageDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
    ...                   ["a", "b"], "toy")
    >>> len(ds), ds.input_size, ds.num_classes
    (4, (1, 8, 8), 2)
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    masks: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ImageDataset {self.name!r}: images must be a uint8 tensor (N, C, H, W); received "
                f"dtype={self.images.dtype}, shape={tuple(self.images.shape)}. Convert with "
                "x.to(torch.uint8) and add the channel axis with x.unsqueeze(1)."
            )
        n = self.images.shape[0]
        if self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (n,):
            raise ValueError(
                f"ImageDataset {self.name!r}: labels must be an int64 tensor of shape ({n},) to match "
                f"the images; received dtype={self.labels.dtype}, shape={tuple(self.labels.shape)}."
            )
        if self.masks is not None:
            expected = (n, *self.images.shape[2:])
            if self.masks.dtype != torch.int64 or tuple(self.masks.shape) != expected:
                raise ValueError(
                    f"ImageDataset {self.name!r}: masks must be an int64 tensor of shape {expected}; "
                    f"received dtype={self.masks.dtype}, shape={tuple(self.masks.shape)}."
                )
        for key, value in self.extras.items():
            if value.shape[0] != n:
                raise ValueError(
                    f"ImageDataset {self.name!r}: extras[{key!r}] must have {n} rows (one per image); "
                    f"received shape={tuple(value.shape)}."
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (for segmentation: number of mask ids, background included)."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.images.shape[1])

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def task(self) -> str:
        """``"segmentation"`` when the dataset has masks, else ``"classification"``."""
        return "segmentation" if self.masks is not None else "classification"

    def subset(self, index: torch.Tensor, name: str | None = None) -> ImageDataset:
        """The samples at ``index`` (an int64 tensor of positions), as a new dataset (copies).

        >>> ds = ImageDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4), list("abcd"), "t")
        >>> ds.subset(torch.tensor([3, 0])).labels.tolist()
        [3, 0]
        """
        return ImageDataset(
            images=self.images[index],
            labels=self.labels[index],
            classes=list(self.classes),
            name=self.name if name is None else name,
            masks=None if self.masks is None else self.masks[index],
            extras={key: value[index] for key, value in self.extras.items()},
        )

    def class_counts(self) -> torch.Tensor:
        """Number of samples per class, ``int64 (num_classes,)``."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def __repr__(self) -> str:
        extra = "" if self.masks is None else ", masks"
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, input_size={self.input_size}, "
            f"classes={self.num_classes}{extra})"
        )


def check_labels(labels: torch.Tensor, num_classes: int, source: str) -> None:
    """Raise :class:`~cnnlab.errors.DataError` when a label is outside ``range(num_classes)``."""
    from cnnlab.errors import DataError

    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = int(((labels < 0) | (labels >= num_classes)).sum())
        raise DataError(
            f"{source}: labels must lie in 0..{num_classes - 1} ({num_classes} classes), but {bad} of "
            f"{labels.numel()} labels are outside that range (min {low}, max {high}). The file is "
            "corrupt or belongs to another dataset: download it again or check --data."
        )
