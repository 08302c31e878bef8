"""Encoder-decoders: U-Net (both upsampling modes), SegNet (max unpooling), the convolutional autoencoder.

Shapes at odd sizes, the unpooling contract, the declared receptive fields against gradients, and a
few real optimisation steps on the generated ``shapes`` data.
"""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
import torch.nn as nn

from cnnlab.data.shapes import make_shapes
from cnnlab.models import create_model, model_info
from cnnlab.models.autoencoder import ConvAutoencoder
from cnnlab.models.segnet import SegNet
from cnnlab.models.unet import UNet


@pytest.mark.parametrize(("name", "upsampler"), [("unet", nn.Upsample), ("unet_transposed", nn.ConvTranspose2d)])
def test_unet_variants_shape_and_upsampler(name: str, upsampler: type[nn.Module]) -> None:
    model = create_model(name, widths=(4, 8, 16)).eval()
    assert model_info(name).task == "segmentation"
    assert {type(m) for m in model.modules()} >= {upsampler}
    other = nn.ConvTranspose2d if upsampler is nn.Upsample else nn.Upsample
    assert not any(isinstance(m, other) for m in model.modules())
    x = torch.randn(2, 1, 24, 40)
    assert model(x).shape == (2, 4, 24, 40)
    assert model.forward_features(x).shape == (2, model.num_features, 24, 40)
    assert model.bottleneck_channels == 16
    model.reset_classifier(6)
    assert model(x).shape == (2, 6, 24, 40)


def test_unet_rejects_sizes_not_divisible_by_the_pooling() -> None:
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(levels-1\) = 4 .* received 30x32\. .*32x32"):
        UNet(widths=(4, 8, 16))(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"up must be 'bilinear' .* received up='nearest'"):
        UNet(up="nearest")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(7, 7), (13, 11), (9, 16), (64, 64)])
def test_segnet_odd_sizes_come_back_exactly(size: tuple[int, int]) -> None:
    model = SegNet(num_classes=3, widths=(4, 8)).eval()
    x = torch.randn(2, 1, *size)
    assert model(x).shape == (2, 3, *size)


def test_segnet_unpools_to_the_argmax_positions() -> None:
    """The first unpooling (deepest level) writes each value at its argmax and zeros elsewhere."""
    torch.manual_seed(0)
    model = SegNet(widths=(4, 8)).eval()
    seen: dict[str, torch.Tensor] = {}
    model.pools[1].register_forward_hook(lambda m, i, o: seen.update(pool_in=i[0]))
    model.unpools[0].register_forward_hook(lambda m, i, o: seen.update(unpooled=o))
    model(torch.randn(1, 1, 13, 11))
    pool_in, unpooled = seen["pool_in"][0], seen["unpooled"][0]
    assert unpooled.shape == pool_in.shape == (8, 6, 5)
    expected = torch.zeros_like(pool_in)
    for c in range(8):
        for i in range(0, 6, 2):
            for j in range(0, 4, 2):  # the odd last column is in no window: it stays zero
                window = pool_in[c, i : i + 2, j : j + 2]
                di, dj = divmod(int(window.argmax()), 2)
                expected[c, i + di, j + dj] = window.max()
    torch.testing.assert_close(unpooled, expected)


@pytest.mark.parametrize("size", [(28, 28), (27, 27), (13, 17), (32, 32)])
def test_autoencoder_output_has_the_input_shape(size: tuple[int, int]) -> None:
    model = ConvAutoencoder(widths=(4, 8, 8), code_channels=2).eval()
    x = torch.randn(2, 1, *size)
    out = model(x)
    assert out.shape == x.shape
    code = model.encode(x)
    assert code.shape == (2, 2, -(-size[0] // 8), -(-size[1] // 8))
    torch.testing.assert_close(model.decode(code, size), out)  # decode(encode(x)) is the forward pass


def test_autoencoder_task_and_output_channels() -> None:
    assert model_info("conv_autoencoder").task == "reconstruction"
    model = create_model("conv_autoencoder", in_chans=3, widths=(4,), code_channels=2)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    model.reset_classifier(1)  # e.g. colour -> grey
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 1, 8, 8)


def _linear_erf(model: nn.Module, size: int, phases: int) -> int:
    """Largest extent (rows) of the input gradient of one feature position, ReLUs made identities.

    Without ReLUs the network is linear in its input, so the gradient is non-zero exactly on the
    support of the receptive field (no data-dependent masking); positions of every phase are tried.
    """
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.Identity())
    model = model.double().eval()
    best = 0
    for d in range(phases):
        x = torch.randn(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        c = size // 2 + d
        model.forward_features(x)[0, :, c, c].sum().backward()
        assert x.grad is not None
        rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
        best = max(best, int(rows.max() - rows.min() + 1))
    return best


@pytest.mark.parametrize(
    ("name", "kwargs", "exact"),
    [
        ("unet", {"widths": (2, 2, 2, 2)}, True),  # bilinear mixes two neighbours: 124, not nearest's 116
        ("unet_transposed", {"widths": (2, 2, 2, 2)}, True),
        ("conv_autoencoder", {"widths": (2, 2, 2), "code_channels": 1}, True),
        # max unpooling: the declared RF counts the whole pooling window, an upper bound (DESIGN.md)
        ("segnet", {"widths": (2, 2, 2)}, False),
    ],
)
def test_declared_rf_matches_gradients(name: str, kwargs: dict[str, object], exact: bool) -> None:
    torch.manual_seed(0)
    declared = model_info(name).rf
    assert declared is not None
    erf = _linear_erf(create_model(name, **kwargs), 192, 8)
    assert erf == declared if exact else 0.8 * declared <= erf <= declared


@pytest.mark.parametrize("name", ["unet", "unet_transposed", "segnet"])
def test_segmenters_learn_on_shapes(name: str) -> None:
    """A few Adam steps on 16 generated 32x32 images lower the per-pixel cross-entropy by a lot."""
    torch.manual_seed(0)
    images, masks, _ = make_shapes(16, 32, seed=3)
    x = (images.float() / 255 - 0.5) / 0.25
    model = create_model(name, widths=(4, 8, 16))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(x), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_autoencoder_learns_to_reconstruct() -> None:
    torch.manual_seed(0)
    images, _, _ = make_shapes(16, 28, seed=4)
    x = (images.float() / 255 - 0.5) / 0.25
    model = create_model("conv_autoencoder", widths=(4, 8, 8), code_channels=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        loss = nn.functional.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize("name", ["unet", "segnet", "autoencoder", "spec"])
def test_docstring_examples(name: str) -> None:
    """The runnable examples in the docstrings of these model files (and the spec builder) stay true."""
    module = importlib.import_module(f"cnnlab.models.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
