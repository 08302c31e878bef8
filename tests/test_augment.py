"""Batched augmentation: each op against a per-sample reference, determinism, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.data import augment as A


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-6) -> None:
    # torch.testing.assert_close costs seconds on its first call here (lazy imports); allclose is enough.
    assert a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0), float((a - b).abs().max())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def asymmetric_batch(b: int = 16, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    # Distinct values everywhere, so no sample equals its mirror image or any rotation of itself.
    return torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w) + 1.0


def test_hflip_flips_exactly_the_selected_samples() -> None:
    x = asymmetric_batch()
    which = A.draw_flips(16, 0.5, gen(3))
    out = A.flip(x, which)
    for i in range(16):
        assert torch.equal(out[i], x[i].flip(-1) if which[i] else x[i])
    assert 0 < int(which.sum()) < 16  # both cases were exercised
    # hflip draws the same selection from the same seed.
    assert torch.equal(A.hflip(x, 0.5, gen(3)), out)
    assert torch.equal(A.hflip(x, 1.0), x.flip(-1)) and torch.equal(A.hflip(x, 0.0), x)


def test_translate_matches_per_sample_slicing_with_zero_fill() -> None:
    x = asymmetric_batch(b=9, c=2, h=6, w=7)
    shifts = torch.tensor([[dy, dx] for dy in (-2, 0, 3) for dx in (-1, 0, 4)])
    out = A.translate(x, shifts)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        ref = torch.zeros_like(x[i])
        h, w = 6, 7
        src = x[i][:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        ref[:, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
        assert torch.equal(out[i], ref), (dy, dx)


def test_translate_takes_whole_float_shifts_and_refuses_fractions() -> None:
    x = asymmetric_batch(b=2, c=1, h=5, w=5)
    whole = torch.tensor([[1, -2], [0, 3]])
    assert torch.equal(A.translate(x, whole.float()), A.translate(x, whole))
    cases = (([[0.5, 0.0], [0.0, 0.0]], "0.5"), ([[0, 0], [-1.7, 0]], "-1.7"), ([[float("inf"), 0], [0, 0]], "inf"))
    for bad, shown in cases:
        with pytest.raises(ValueError, match=rf"shifts must be whole pixels; received a shift of {shown}\."):
            A.translate(x, bad)  # it shifted by int(shift) (0 for 0.5, -1 for -1.7) without a word


def test_random_crop_is_a_crop_of_the_zero_padded_image() -> None:
    x = asymmetric_batch(b=12, c=1, h=10, w=10).to(torch.uint8)
    pad = 3
    out = A.random_crop(x, padding=pad, generator=gen(1))
    shifts = A.draw_shifts(12, pad, gen(1))
    padded = F.pad(x, (pad, pad, pad, pad))
    for i, (dy, dx) in enumerate(shifts.tolist()):
        top, left = pad - dy, pad - dx  # crop window in the padded image
        assert torch.equal(out[i], padded[i, :, top : top + 10, left : left + 10])
    assert out.dtype == torch.uint8 and shifts.abs().max() <= pad
    assert len(set(map(tuple, shifts.tolist()))) > 3


def test_cutout_zeroes_one_square_of_the_stated_size() -> None:
    x = torch.ones(32, 3, 12, 12)
    out = A.cutout(x, 5, gen(0))
    for i in range(32):
        zero = out[i] == 0
        assert int(zero.sum()) == 3 * 25  # one 5x5 square in every channel
        rows = torch.nonzero(zero[0].any(1)).flatten()
        cols = torch.nonzero(zero[0].any(0)).flatten()
        assert rows.numel() == 5 and cols.numel() == 5 and int(rows[-1] - rows[0]) == 4
        assert torch.equal(zero[0], zero[1])  # the same square in every channel
    positions = {tuple(torch.nonzero(out[i, 0] == 0)[0].tolist()) for i in range(32)}
    assert len(positions) > 10  # squares land in different places
    assert torch.equal(A.cutout(x, 5, gen(0), p=0.0), x)
    with pytest.raises(ValueError, match=r"size must be between 1 and the image side 12; received size=13"):
        A.cutout(x, 13)


def test_mixup_mixes_inputs_and_labels() -> None:
    x = torch.rand(64, 1, 4, 4)
    y = torch.arange(64) % 10
    m = A.mixup(x, y, alpha=0.4, generator=gen(2))
    assert 0.0 <= m.lam <= 1.0
    perm = torch.randperm(64, generator=_after_seed_draw(gen(2)))
    assert_close(m.inputs, m.lam * x + (1 - m.lam) * x[perm])
    assert torch.equal(m.targets_a, y) and torch.equal(m.targets_b, y[perm])
    assert not torch.equal(perm, torch.arange(64))
    soft = m.soft_targets(10)
    assert_close(soft.sum(1), torch.ones(64))
    logits = torch.randn(64, 10)
    ce = torch.nn.CrossEntropyLoss()
    assert_close(m.loss(ce, logits), -(soft * logits.log_softmax(1)).sum(1).mean())
    lams = [A.mixup(x, y, alpha=0.2, generator=gen(s)).lam for s in range(200)]
    # Beta(0.2, 0.2) is U-shaped: most draws lie near 0 or 1.
    assert all(0 <= v <= 1 for v in lams) and min(lams) < 0.1 and max(lams) > 0.9
    with pytest.raises(ValueError, match="mixup: x must be a float tensor"):
        A.mixup(x.to(torch.uint8), y)


def _after_seed_draw(g: torch.Generator) -> torch.Generator:
    torch.randint(0, 2**62, (1,), generator=g)  # mixup draws the Beta seed first, then the permutation
    return g


def test_rot90_four_times_is_identity_and_matches_torch() -> None:
    x = asymmetric_batch(b=8, c=2, h=5, w=5)
    k = A.draw_quarter_turns(8, gen(4))
    out = A.rot90(x, k)
    for i in range(8):
        assert torch.equal(out[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
    y = x
    for _ in range(4):
        y = A.rot90(y, k)
    assert torch.equal(y, x)
    assert torch.equal(A.rot90(A.rot90(x, 1), -1), x)


def test_rotate_agrees_with_rot90_and_four_quarter_turns_return_the_input() -> None:
    x = torch.rand(4, 3, 9, 9)
    for k in range(4):
        assert_close(A.rotate(x, 90.0 * k), torch.rot90(x, k, dims=(-2, -1)), atol=1e-5)
    y = x
    for _ in range(4):
        y = A.rotate(y, 90.0)
    assert_close(y, x, atol=1e-5)
    # Non-square images rotate rigidly: 180 degrees equals a double flip.
    r = torch.rand(2, 1, 4, 7)
    assert_close(A.rotate(r, 180.0), r.flip(-1).flip(-2), atol=1e-5)


def test_rotate_small_angle_moves_a_point_counter_clockwise() -> None:
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 18] = 1.0  # a dot 8 pixels right of the centre
    out = A.rotate(x, torch.tensor([30.0]))
    i, j = divmod(int(out.flatten().argmax()), 21)
    # Counter-clockwise on screen (y down): the dot moves up.
    assert (i, j) == (round(10 - 8 * 0.5), round(10 + 8 * 0.8660254))
    u8 = A.rotate((x * 255).to(torch.uint8), 30.0)
    assert u8.dtype == torch.uint8


def test_same_seed_same_batch_different_seed_different_batch() -> None:
    x = torch.rand(16, 3, 12, 12)

    def pipeline(seed: int) -> torch.Tensor:
        g = gen(seed)
        y = A.hflip(x, generator=g)
        y = A.random_crop(y, 2, generator=g)
        y = A.cutout(y, 4, generator=g)
        y = A.random_rot90(y, generator=g)
        return A.random_rotate(y, 20.0, generator=g)

    assert torch.equal(pipeline(7), pipeline(7))
    assert not torch.equal(pipeline(7), pipeline(8))


def test_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"translate: x must be a batch .*received .*shape \(3, 4, 4\)"):
        A.translate(torch.zeros(3, 4, 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]; received p=1.5"):
        A.hflip(torch.zeros(1, 1, 2, 2), p=1.5)
    with pytest.raises(ValueError, match="per-sample rotations need square images"):
        A.rot90(torch.zeros(2, 1, 3, 4), torch.tensor([0, 1]))


def test_wrong_per_sample_arguments_are_refused_naming_argument_rule_and_value() -> None:
    """These were raw broadcast RuntimeErrors, AttributeErrors, an IndexError, or silently mismatched targets."""
    x = torch.rand(2, 1, 3, 3)
    with pytest.raises(ValueError, match=r"flip: which must have shape \(2,\), one entry per .*received shape \(3,\)"):
        A.flip(x, torch.tensor([True, False, True]))
    with pytest.raises(TypeError, match=r"flip: which must be a bool tensor .*dtype torch.int64.*which.bool\(\)"):
        A.flip(x, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"translate: shifts must have shape \(2, 2\).*received shape \(3, 2\)"):
        A.translate(x, torch.zeros(3, 2))
    with pytest.raises(TypeError, match=r"translate: shifts must be a tensor or a sequence .*received str"):
        A.translate(x, "up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"rot90: k must have shape \(2,\).*received shape \(3,\)"):
        A.rot90(x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"rot90: k must be an int or one int per sample \(2,\); received float 1.5"):
        A.rot90(x, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"rot90: k must hold integers .*torch.float32"):
        A.rot90(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match=r"rotate: degrees must be a number, or a tensor or sequence of 2 numbers; "
                       r"received str '30'\. Use e.g. degrees=30.0"):
        A.rotate(x, "30")  # type: ignore[arg-type]
    for bad in (6, 1):  # shorter (was an IndexError) and longer (was silently mismatched) than the batch
        with pytest.raises(ValueError, match=rf"mixup: y must be .*shape \({bad}, \.\.\.\).*received shape \(5,\)"):
            A.mixup(torch.rand(bad, 1, 4, 4), torch.arange(5))
    with pytest.raises(ValueError, match=r"mixup: y must be .*received list"):
        A.mixup(torch.rand(2, 4), [0, 1])  # type: ignore[arg-type]
    for fn in (A.hflip, A.random_crop, A.random_rot90, A.random_rotate):
        with pytest.raises(TypeError, match=rf"{fn.__name__}: x must be a torch.Tensor .*numpy.ndarray.*from_numpy"):
            fn(np.zeros((2, 1, 3, 3)))  # type: ignore[operator]


def test_int_like_scalars_and_sequences_are_accepted() -> None:
    x = asymmetric_batch(b=2, c=1, h=4, w=4)
    assert torch.equal(A.flip(x, [True, False]), A.flip(x, torch.tensor([True, False])))
    assert torch.equal(A.flip(x, np.array([False, True])), A.flip(x, torch.tensor([False, True])))
    assert torch.equal(A.translate(x, [[1, 0], [0, -1]]), A.translate(x, torch.tensor([[1, 0], [0, -1]])))
    want = torch.rot90(x, 1, dims=(-2, -1))
    for k in (np.int64(1), torch.tensor(1), 5):
        assert torch.equal(A.rot90(x, k), want)  # type: ignore[arg-type]
    assert A.rot90(torch.rand(2, 1, 3, 5), np.int32(2)).shape[-2:] == (3, 5)  # one k: non-square is fine
    assert torch.equal(A.rot90(x, [1, 3]), A.rot90(x, torch.tensor([1, 3])))
    assert torch.equal(A.rot90(x, np.array([1, 3])), A.rot90(x, torch.tensor([1, 3])))
    assert_close(A.rotate(x, [90.0, 90.0]), want, atol=1e-5)
    assert A.mixup(torch.rand(3, 5), torch.arange(3)).inputs.shape == (3, 5)  # not only images


def test_rotate_float64_computes_in_float64() -> None:
    x = torch.rand(2, 1, 6, 8, dtype=torch.float64)
    out = A.rotate(x, 180.0)
    assert out.dtype == torch.float64
    assert float((out - torch.rot90(x, 2, dims=(-2, -1))).abs().max()) < 1e-12  # was 3e-7 (theta in float32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_get_the_same_augmentation_as_cpu() -> None:
    # Random parameters are drawn on the CPU generator, so the device does not change the result.
    x = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)

    def pipeline(batch: torch.Tensor) -> torch.Tensor:
        g = gen(11)
        y = A.random_crop(A.hflip(batch, generator=g), 2, generator=g)
        y = A.random_rot90(A.cutout(y, 3, generator=g), generator=g)
        return A.random_rotate(y.float(), 30.0, generator=g)

    assert_close(pipeline(x.cuda()).cpu(), pipeline(x), atol=1e-3)
