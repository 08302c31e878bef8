"""The generated ``shapes`` segmentation set and the ``rot-<name>`` rotated datasets."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.rotated import rotate_dataset
from cnnlab.data.shapes import CLASSES, TRIANGLE_R, make_shapes, shape_masks


def one(v: float) -> torch.Tensor:
    return torch.tensor([[float(v)]])


@pytest.mark.parametrize("kind", [1, 2, 3])
@pytest.mark.parametrize("angle", [0.0, 0.4, 2.0])
def test_each_kind_covers_the_area_of_its_circle(kind: int, angle: float) -> None:
    m = shape_masks(torch.tensor([[kind]]), one(60), one(60), one(25), one(angle), 120)
    assert abs(int(m.sum()) - math.pi * 25**2) / (math.pi * 25**2) < 0.03


def test_shapes_geometry_is_what_the_name_says() -> None:
    r = 20.0
    circle = shape_masks(torch.tensor([[1]]), one(50), one(50), one(r), one(0), 100)[0, 0]
    square = shape_masks(torch.tensor([[2]]), one(50), one(50), one(r), one(0), 100)[0, 0]
    triangle = shape_masks(torch.tensor([[3]]), one(50), one(50), one(r), one(0), 100)[0, 0]
    # Axis-aligned square: every covered row has the same width, equal to its height.
    rows = square.sum(1)[square.any(1)]
    assert rows.unique().numel() == 1 and int(rows[0]) == int(square.any(1).sum())
    # Circle: the covered row width shrinks away from the centre; its height equals its width.
    assert int(circle.any(1).sum()) == int(circle.any(0).sum()) == 40
    # Equilateral triangle (circumradius R): its cross-section grows linearly from a tip to the
    # opposite side of length sqrt(3) R, over a height of 1.5 R.
    big_r = TRIANGLE_R * r
    widths = triangle.sum(0)[triangle.any(0)].float()
    assert abs(float(widths.max()) - math.sqrt(3) * big_r) <= 2 and float(widths.min()) <= 3
    assert abs(widths.numel() - 1.5 * big_r) <= 1.5 and bool((widths.diff() >= 0).all())


def test_masks_and_images_agree_and_are_reproducible() -> None:
    a = load_dataset("shapes", "train", n=64, size=32, seed=3)
    b = load_dataset("shapes", "train", n=64, size=32, seed=3)
    c = load_dataset("shapes", "train", n=64, size=32, seed=4)
    test = load_dataset("shapes", "test", n=64, size=32, seed=3)
    assert a.masks is not None and b.masks is not None and c.masks is not None and test.masks is not None
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, c.masks) and not torch.equal(a.masks, test.masks)
    assert a.images.shape == (64, 1, 32, 32) and a.masks.shape == (64, 32, 32)
    assert a.masks.dtype == torch.int64
    assert a.classes == CLASSES and a.task == "segmentation"
    assert set(a.masks.unique().tolist()) == {0, 1, 2, 3}
    # Shapes are painted bright on a darker noisy background.
    assert a.images[:, 0][a.masks > 0].float().mean() > a.images[:, 0][a.masks == 0].float().mean() + 80
    # The label is the class covering most pixels.
    counts = torch.stack([(a.masks == k).flatten(1).sum(1) for k in (1, 2, 3)], 1)
    assert torch.equal(a.labels, counts.argmax(1) + 1)


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.data import shapes

    whole = make_shapes(20, 24, seed=9)
    monkeypatch.setattr(shapes, "CHUNK", 7)
    chunked = make_shapes(20, 24, seed=9)
    assert all(torch.equal(x, y) for x, y in zip(whole, chunked))


def test_colour_shapes_and_argument_errors() -> None:
    images, _, _ = make_shapes(4, 32, channels=3, seed=0)
    assert images.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match=r"shapes: size must be >= 16 pixels .*received size=8"):
        make_shapes(4, 8)


def test_rot90_only_rotates_images_and_masks_exactly() -> None:
    base = load_dataset("shapes", "test", n=16, size=32, seed=1)
    rot = rotate_dataset(base, seed=5, rot90_only=True)
    assert rot.name == "rot-shapes" and rot.masks is not None and base.masks is not None
    angles = rot.extras["angle"]
    assert set(angles.tolist()) <= {0.0, 90.0, 180.0, 270.0} and angles.unique().numel() > 1
    for i in range(16):
        k = int(angles[i]) // 90
        assert torch.equal(rot.images[i], torch.rot90(base.images[i], k, dims=(-2, -1)))
        assert torch.equal(rot.masks[i], torch.rot90(base.masks[i], k, dims=(-2, -1)))
    assert torch.equal(rot.labels, base.labels)


def test_arbitrary_rotations_are_seeded_and_keep_mask_ids() -> None:
    a = load_dataset("rot-shapes", "test", n=8, size=32, max_degrees=45.0)
    b = load_dataset("rot-shapes", "test", n=8, size=32, max_degrees=45.0)
    c = load_dataset("rot-shapes", "test", n=8, size=32, max_degrees=45.0, seed=1)
    assert a.masks is not None and b.masks is not None
    assert torch.equal(a.images, b.images) and torch.equal(a.extras["angle"], b.extras["angle"])
    assert not torch.equal(a.extras["angle"], c.extras["angle"])
    assert a.extras["angle"].abs().max() <= 45.0
    assert set(a.masks.unique().tolist()) <= {0, 1, 2, 3}  # nearest sampling: no blended ids
    with pytest.raises(ValueError, match=r"'rot-rot-shapes' is not valid"):
        load_dataset("rot-rot-shapes")


@pytest.mark.parametrize("name", ["rot-xyz", "rot-", "rot-folder:", "rot-mnsit"])
def test_rot_of_an_unknown_base_names_what_the_user_typed(name: str) -> None:
    # 'rot-xyz' used to fail with "dataset must be one of ...; received 'xyz'", a name nobody typed.
    with pytest.raises(ValueError, match=rf"dataset '{name}' is not valid: rot- must be followed by") as err:
        load_dataset(name)
    if name == "rot-mnsit":
        assert "Did you mean 'mnist'" in str(err.value)
