"""Our VGG-16 / ResNet-50 / AlexNet are torchvision's, weight for weight (optional: needs torchvision).

Each of our models' state dict loads into torchvision's model with ``strict=True`` (same names, same
shapes), and the two then give the same outputs on the same input; then the reverse direction. The
models are built with 10 classes and compared at small inputs to stay fast: the convolutional and
fully connected weights are all there (only the last layer's width changes).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn

from cnnlab.models import create_model

tv_models = pytest.importorskip("torchvision.models", reason="torchvision is an optional reference")


def _materialise(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build on the meta device, then fill with seeded random weights (fan-in scaled, so activations
    stay O(1)): far cheaper than the models' own initialisers on 138 M parameters."""
    with torch.device("meta"):
        model = factory()
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            std = 1 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.1
            p.normal_(0.0, std, generator=g)
    _randomise_bn(model, g)
    return model.eval()


def _empty(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return factory().eval()


def _randomise_bn(model: nn.Module, g: torch.Generator) -> None:
    """Non-trivial BN statistics, so eval-mode outputs depend on them being carried over."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.num_batches_tracked.zero_()


CASES: list[tuple[str, Callable[..., nn.Module], int]] = [
    ("vgg16", lambda: tv_models.vgg16(weights=None, num_classes=10), 64),
    ("resnet50", lambda: tv_models.resnet50(weights=None, num_classes=10), 64),
    ("alexnet", lambda: tv_models.alexnet(weights=None, num_classes=10), 96),
    ("vgg11_bn", lambda: tv_models.vgg11_bn(weights=None, num_classes=10), 32),
    ("resnet18", lambda: tv_models.resnet18(weights=None, num_classes=10), 64),
]
REVERSE = [c for c in CASES if c[0] in ("resnet50", "alexnet", "vgg11_bn")]


@pytest.mark.parametrize(("name", "tv_factory", "size"), CASES, ids=[c[0] for c in CASES])
def test_ours_into_torchvision(name: str, tv_factory: Callable[[], nn.Module], size: int) -> None:
    ours = _materialise(lambda: create_model(name, num_classes=10), seed=0)
    theirs = _empty(tv_factory)
    theirs.load_state_dict(ours.state_dict(), strict=True, assign=True)  # names and shapes must match
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(x)
        assert expected.abs().max() > 1e-3  # a meaningful comparison, not two zero vectors
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "tv_factory", "size"), REVERSE, ids=[c[0] for c in REVERSE])
def test_torchvision_into_ours(name: str, tv_factory: Callable[[], nn.Module], size: int) -> None:
    theirs = _materialise(tv_factory, seed=1)
    ours = _empty(lambda: create_model(name, num_classes=10))
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(x)
        assert expected.abs().max() > 1e-3  # a meaningful comparison, not two zero vectors
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "alexnet"])
def test_parameter_counts_equal_torchvision_at_1000_classes(name: str) -> None:
    with torch.device("meta"):
        ours, theirs = create_model(name), getattr(tv_models, name)(weights=None)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
