"""In-memory batch iterator, normalisation, and the train/validation split."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import ImageDataset, split_train_val
from cnnlab.data.loader import TensorLoader, channel_stats, normalize


def toy(n: int = 103, classes: int = 5) -> ImageDataset:
    images = torch.randint(0, 256, (n, 2, 3, 3), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    return ImageDataset(images, torch.arange(n) % classes, [f"c{i}" for i in range(classes)], "toy")


def test_loader_covers_every_sample_once_per_epoch_and_reshuffles() -> None:
    ds = toy()
    loader = TensorLoader(ds.images, ds.labels, batch_size=10, generator=torch.Generator().manual_seed(1))
    assert len(loader) == 11
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [x.shape[0] for x, _ in batches] == [10] * 10 + [3]
        labels = torch.cat([y for _, y in batches])
        images = torch.cat([x for x, _ in batches])
        order = torch.cat([loader_order(ds, x) for x, _ in batches])
        assert sorted(order.tolist()) == list(range(103))  # a permutation: every sample once
        assert torch.equal(labels, ds.labels[order]) and torch.equal(images, ds.images[order])
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])
    again = TensorLoader(ds.images, ds.labels, batch_size=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([y for _, y in again]), ds.labels[epochs[0]])  # same seed, same order


def loader_order(ds: ImageDataset, x: torch.Tensor) -> torch.Tensor:
    # Recover each batch row's index by matching its pixels (the random images are all distinct).
    flat = ds.images.flatten(1)
    return torch.tensor([int(torch.nonzero((flat == row).all(1))[0]) for row in x.flatten(1)])


def test_loader_without_shuffle_yields_views_and_drop_last() -> None:
    ds = toy(n=25)
    loader = TensorLoader(ds.images, ds.labels, batch_size=8, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert batches[0][0].data_ptr() == ds.images.data_ptr()  # a slice, not a copy


def test_loader_shards_across_ranks() -> None:
    ids = torch.arange(10)
    seen = []
    for rank in range(3):
        # Every rank seeds its generator alike, so all ranks shard the same permutation.
        loader = TensorLoader(ids, batch_size=2, generator=torch.Generator().manual_seed(5),
                              rank=rank, world_size=3)
        assert len(loader) == 2  # ceil(10 / 3) = 4 samples per rank
        seen.append(torch.cat([b[0] for b in loader]))
    everything = torch.cat(seen).tolist()
    assert len(everything) == 12 and set(everything) == set(range(10))  # 2 padded repeats
    with pytest.raises(ValueError, match=r"rank must be in 0..world_size-1; received rank=3, world_size=3"):
        TensorLoader(ids, batch_size=2, rank=3, world_size=3)


def test_channel_stats_and_normalize_match_torch() -> None:
    ds = toy(n=50)
    mean, std = channel_stats(ds.images)
    x = ds.images.double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), x.mean(dim=(0, 2, 3)))
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), x.std(dim=(0, 2, 3), unbiased=False))
    fmean, fstd = channel_stats(x.float())  # float input: same moments
    assert max(abs(a - b) for a, b in zip(fmean + fstd, mean + std)) < 1e-6
    z = normalize(ds.images, mean, std)
    assert z.dtype == torch.float32
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match=r"one value per channel \(2\).*received mean=\[0.5\]"):
        normalize(ds.images, [0.5], [0.2])


def test_split_train_val_is_deterministic_disjoint_and_stratified() -> None:
    ds = toy(n=100, classes=4)
    ds.extras["id"] = torch.arange(100)
    train, val = split_train_val(ds, 0.2, seed=3)
    train2, val2 = split_train_val(ds, 0.2, seed=3)
    _, val_other = split_train_val(ds, 0.2, seed=4)
    ids_t, ids_v = train.extras["id"], val.extras["id"]
    assert len(train) == 80 and len(val) == 20
    assert set(ids_t.tolist()).isdisjoint(ids_v.tolist())
    assert len(set(ids_t.tolist()) | set(ids_v.tolist())) == 100
    assert torch.equal(ids_v, val2.extras["id"]) and torch.equal(ids_t, train2.extras["id"])
    assert not torch.equal(ids_v, val_other.extras["id"])
    assert val.class_counts().tolist() == [5, 5, 5, 5]
    assert torch.equal(val.images, ds.images[ids_v]) and torch.equal(val.labels, ds.labels[ids_v])
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match=rf"val_fraction must be .* strictly between 0 and 1.*={bad}"):
            split_train_val(ds, bad, seed=0)


def test_image_dataset_validates_its_tensors() -> None:
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor .*received dtype=torch.float32"):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ["a"], "bad")
    with pytest.raises(ValueError, match=r"labels must be an int64 tensor of shape \(2,\)"):
        images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
        ImageDataset(images, torch.zeros(3, dtype=torch.int64), ["a"], "bad")
