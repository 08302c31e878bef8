"""The whitened first layer: patch_whitening against the covariance it must undo, FastNet's frozen stem,
and the recipe and fit() plumbing (the filters come from the training split only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.loader import normalize
from cnnlab.layers.whitening import patch_whitening
from cnnlab.models import create_model
from cnnlab.train.config import TrainConfig
from cnnlab.train.loop import fit
from cnnlab.train.recipes import resolve_recipe
from cnnlab.train.setup import WHITEN_IMAGES, load_data


def _correlated_images(n: int = 200, c: int = 1, size: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(n, c, size + 2, size + 2, generator=g)
    return F.avg_pool2d(noise, 3, stride=1) * 3 + 0.5  # neighbouring pixels correlate; non-zero mean


@pytest.mark.parametrize("c", [1, 3])
def test_filters_whiten_the_patches_they_see(c: int) -> None:
    x = _correlated_images(c=c)
    dims = c * 9
    w = patch_whitening(x, 3, 2 * dims, eps=1e-9)
    assert w.shape == (2 * dims, c, 3, 3)
    torch.testing.assert_close(w[1::2], -w[0::2])  # each component with both signs
    out = F.conv2d(x.double(), w[0::2].double(), padding=1)  # the same zero-padded patches
    flat = out.transpose(0, 1).reshape(dims, -1)
    cov = torch.cov(flat, correction=0)
    torch.testing.assert_close(cov, torch.eye(dims, dtype=torch.float64), atol=1e-4, rtol=0)
    variances = (F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, dims) @ w[0::2].reshape(dims, dims).T).var(0)
    assert torch.all(variances > 0.99) and torch.all(variances < 1.01)


@pytest.mark.parametrize("k", [2, 4])
def test_even_kernels_whiten_the_patches_a_same_conv_sees(k: int) -> None:
    """An even kernel's 'same' conv pads (k-1)//2 before and k//2 after; the patches were padded k//2 on
    both sides, one extra row and column of mostly-zero patches, so the covariance was not the conv's."""
    from cnnlab.layers import Conv2d

    x = _correlated_images(size=9)
    dims = k * k
    w = patch_whitening(x, k, 2 * dims, eps=1e-9)
    conv = Conv2d(1, dims, k, padding="same", bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(w[0::2].double())
    out = conv(x.double())
    assert out.shape[-2:] == x.shape[-2:]
    cov = torch.cov(out.transpose(0, 1).reshape(dims, -1), correction=0)
    torch.testing.assert_close(cov, torch.eye(dims, dtype=torch.float64), atol=1e-4, rtol=0)


def test_kernel_size_must_be_a_positive_int() -> None:
    # 0 said 'out_channels must be between 1 and 2 x C x k x k = 0' (blaming out_channels)
    with pytest.raises(ValueError, match=r"patch_whitening: kernel_size must be a positive int .*received "
                                         r"kernel_size=0\. Use the first convolution's kernel"):  # fmt: skip
        patch_whitening(_correlated_images(), 0, 2)


def test_out_channels_pick_the_leading_components_and_odd_counts_keep_the_next_one() -> None:
    x = _correlated_images()
    full = patch_whitening(x, 3, 18)
    torch.testing.assert_close(patch_whitening(x, 3, 5), full[:5])
    with pytest.raises(ValueError, match=r"between 1 and 2 x C x k x k = 18.*received out_channels=19"):
        patch_whitening(x, 3, 19)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) batch.*received shape \(12, 12\)"):
        patch_whitening(x[0, 0], 3, 4)
    assert patch_whitening(torch.randint(0, 255, (4, 1, 8, 8), dtype=torch.uint8), 3, 4).dtype == torch.float32


def test_fastnet_init_whitening_sets_and_freezes_the_stem() -> None:
    net = create_model("fastnet", widths=(16, 8, 16, 16))
    x = _correlated_images(size=28)
    net.init_whitening(x)
    stem = net.features[0][0].weight
    torch.testing.assert_close(stem, patch_whitening(x, 3, 16))
    stem_names = {"features.0.0.weight", "features.0.2.weight", "features.0.2.bias"}  # filters, BN scale and shift
    assert {n for n, p in net.named_parameters() if not p.requires_grad} == stem_names
    net.init_whitening(x, freeze=False)
    assert all(p.requires_grad for p in net.parameters())


TINY = {
    "model": "fastnet", "model_kwargs": {"widths": [4, 8, 8, 16]}, "limit_train": 160, "limit_test": 64,
    "val_fraction": 0.2, "batch_size": 32, "epochs": 1, "progress": "none", "threads": 1, "translate": 0,
    "precision": "fp32",
}  # fmt: skip


def test_fit_whitens_from_the_training_split_and_never_trains_the_stem(tmp_path) -> None:
    cfg = TrainConfig.from_dict({**TINY, "whiten": True})
    data = load_data(cfg)
    result = fit(cfg, tmp_path / "w", data=data)
    stem = result.state.model.features[0][0].weight
    bn = result.state.model.features[0][2]
    expected = patch_whitening(normalize(data.train.images[:WHITEN_IMAGES], data.mean, data.std), 3, 4)
    torch.testing.assert_close(stem, expected)  # unchanged by training, and from train images only
    assert bn.weight.eq(1).all() and bn.bias.eq(0).all()  # the stem's batch norm: scale and shift frozen too
    assert result.metrics["trainable_params"] == result.metrics["params"] - stem.numel() - 2 * 4
    plain = fit(TrainConfig.from_dict(TINY), tmp_path / "p", data=data).state.model.features[0][0].weight
    assert not torch.allclose(plain, expected)  # whiten=false: the random stem, trained


def test_recipes_whiten_fastnet_only_and_a_user_setting_wins() -> None:
    assert resolve_recipe("default", cuda_available=False).whiten
    assert resolve_recipe("long", cuda_available=False).whiten
    assert not resolve_recipe("default", {"model": "lenet5"}, cuda_available=False).whiten
    assert not resolve_recipe("default", {"init_from": "runs/x"}, cuda_available=False).whiten
    assert not resolve_recipe("default", assignments=["whiten=false"], cuda_available=False).whiten
    assert not resolve_recipe("quick", cuda_available=False).whiten


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "lenet5", "model_kwargs": {"conv1_padding": 2}},  # padded to take 28x28
         r"model 'lenet5' has no init_whitening\(\).*--set whiten=false"),
        ({"model_kwargs": {"widths": [32, 8, 8, 16]}}, r"whiten=true on model 'fastnet'.*= 18.*received out_channels=32"
         r".*--set whiten=false"),
    ],
)  # fmt: skip
def test_whiten_on_a_model_it_cannot_serve_says_how_to_fix_it(tmp_path, overrides, message) -> None:
    cfg = TrainConfig.from_dict({**TINY, "whiten": True, **overrides})
    with pytest.raises(ValueError, match=message):
        fit(cfg, tmp_path / "run")
