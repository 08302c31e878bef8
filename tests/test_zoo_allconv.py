"""All-CNN-C: no pooling and no fully connected layer, and a 1x1 conv is exactly a linear layer."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.models import create_model


def test_only_convolutions_and_the_paper_size() -> None:
    """Table 2 model C: no pooling layers, no linear layers, 1,369,738 parameters (10 classes)."""
    with torch.device("meta"):
        model = create_model("allcnn_c")
    kinds = {type(m) for m in model.modules()}
    assert not kinds & {nn.Linear, nn.MaxPool2d, nn.AvgPool2d}
    assert sum(p.numel() for p in model.parameters()) == 1_369_738
    strides = [m.stride for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert strides.count((2, 2)) == 2  # the two strided convs that replace pooling


def test_fc_head_on_pooled_features_equals_the_1x1_conv_head() -> None:
    """A linear layer holding the 1x1 conv's weights, applied after the global average, gives the
    same class scores (the ReLU aside): averaging and a 1x1 conv commute."""
    torch.manual_seed(0)
    model = create_model("allcnn_c", width_mult=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    fc = nn.Linear(model.num_features, 10)
    with torch.no_grad():
        fc.weight.copy_(model.classifier.weight[:, :, 0, 0])
        fc.bias.copy_(model.classifier.bias)
    pooled = model.forward_head(feats, pre_logits=True)
    torch.testing.assert_close(fc(pooled), model.classifier(feats).mean((2, 3)))


def test_fully_convolutional_on_larger_inputs() -> None:
    model = create_model("allcnn_c", width_mult=0.25).eval()
    assert model.class_maps(torch.randn(1, 3, 32, 32)).shape == (1, 10, 6, 6)
    assert model.class_maps(torch.randn(1, 3, 64, 64)).shape == (1, 10, 14, 14)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_grey_28px_input() -> None:
    model = create_model("allcnn_c_bn", in_chans=1, width_mult=0.25).eval()
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 48, 5, 5)
