"""Tasks: classification (accuracy, per-class accuracy, confusion matrix), segmentation (U-Net, SegNet on
``shapes``: pixel accuracy, mean IoU) and reconstruction (the convolutional autoencoder: MSE)."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.models import create_model
from cnnlab.train.config import TrainConfig
from cnnlab.train.distributed import DistInfo
from cnnlab.train.loop import Env, _prepare_batch, fit
from cnnlab.train.setup import load_data
from cnnlab.train.tasks import new_stats, summarize, task_loss, update_stats

SHAPES = {
    "data": "shapes", "data_opts": {"n": 48, "size": 32}, "limit_test": 16, "val_fraction": 0.25, "epochs": 1,
    "batch_size": 8, "optimizer": "adamw", "lr": 2e-3, "scale_lr": False, "label_smoothing": 0.0, "translate": 2,
    "flip": True, "progress": "none", "threads": 1, "precision": "fp32", "weight_decay": 0.0,
}  # fmt: skip
TINY_KW = {"unet": {"widths": [4, 8]}, "unet_transposed": {"widths": [4, 8]}, "segnet": {"widths": [4, 8]},
           "conv_autoencoder": {"widths": [4, 8], "code_channels": 2}}  # fmt: skip


def test_classification_metrics_by_hand() -> None:
    # 3 classes, 5 samples: truth [0, 0, 1, 2, 2], prediction [0, 1, 1, 2, 0]
    stats = new_stats("classification", 3)
    pred = torch.tensor([0, 1, 1, 2, 0])
    logits = torch.nn.functional.one_hot(pred, 3).float() * 5
    update_stats(stats, "classification", logits, torch.tensor([0, 0, 1, 2, 2]))
    out = summarize(stats, "classification", ["a", "b", "c"])
    assert out["accuracy"] == 3 / 5
    assert out["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.5}
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]  # rows: truth, columns: prediction
    empty = summarize(new_stats("classification", 2), "classification", ["a", "b"])
    assert empty["per_class_accuracy"] == {"a": None, "b": None}  # no sample of a class: no number


def test_mean_iou_by_hand_over_two_batches_with_absent_classes() -> None:
    # 4 classes over 2 batches. Class 2 is predicted once but never true (IoU 0, counted), class 3 is
    # neither true nor predicted (no IoU, left out of the mean). By hand:
    # class 0: truth {a, b, f}, prediction {a, e, f}: 2 / 4;  class 1: truth {c, d, e}, prediction {c, d}: 2 / 3.
    truth = torch.tensor([[[0, 0, 1]], [[1, 1, 0]]])  # pixels a b c / d e f, one image per batch
    pred = torch.tensor([[[0, 2, 1]], [[1, 0, 0]]])
    stats = new_stats("segmentation", 4)
    for i in range(2):
        logits = torch.nn.functional.one_hot(pred[i : i + 1], 4).permute(0, 3, 1, 2).double()  # (1, 4, 1, 3)
        update_stats(stats, "segmentation", logits, truth[i : i + 1])
    out = summarize(stats, "segmentation", ["bg", "a", "b", "c"])
    assert out["iou"] == {"bg": 0.5, "a": 2 / 3, "b": 0.0, "c": None}
    assert out["mean_iou"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert out["pixel_accuracy"] == out["accuracy"] == 4 / 6


def test_mse_and_loss_weight_batches_by_their_size() -> None:
    g = torch.Generator().manual_seed(0)
    out, target = torch.randn(5, 1, 3, 3, generator=g), torch.randn(5, 1, 3, 3, generator=g)
    stats = new_stats("reconstruction", 0)
    for lo, hi in ((0, 1), (1, 5)):  # unequal batches: a plain mean of batch means would be wrong
        update_stats(stats, "reconstruction", out[lo:hi], target[lo:hi])
    metrics = summarize(stats, "reconstruction", [])
    assert metrics["mse"] == pytest.approx(float((out.double() - target.double()).square().mean()))
    assert metrics["loss"] == pytest.approx(metrics["mse"])


def test_update_stats_refuses_outputs_and_targets_outside_its_classes() -> None:
    # A 5-wide output with 3-class stats counted prediction 4 for truth 0 in cell 0 * 3 + 4 = (1, 1):
    # a wrong answer scored as a correct class 1 (accuracy 1.0); an ignore id -100 failed inside bincount.
    stats = new_stats("classification", 3)
    with pytest.raises(ValueError, match=r"out must hold one score per class, 3 .*received out of shape \(1, 5\)"):
        update_stats(stats, "classification", torch.tensor([[0.0, 0, 0, 0, 5]]), torch.tensor([0]))
    seg = new_stats("segmentation", 2)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\).*received ids from -100 to 1"):
        update_stats(seg, "segmentation", torch.zeros(1, 2, 2, 2), torch.tensor([[[0, -100], [1, 1]]]))
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*from 0 to 3"):
        update_stats(stats, "classification", torch.zeros(2, 3), torch.tensor([0, 3]))
    assert int(stats["confusion"].sum()) == 0 and stats["count"] == 0  # nothing was counted


@pytest.mark.parametrize("model", ["unet", "unet_transposed", "segnet"])
def test_segmentation_models_train_on_shapes(model: str, tmp_path) -> None:
    cfg = TrainConfig.from_dict({**SHAPES, "model": model, "model_kwargs": TINY_KW[model]})
    torch.manual_seed(cfg.seed)
    initial = create_model(model, num_classes=4, in_chans=1, **TINY_KW[model]).state_dict()
    result = fit(cfg, tmp_path / model)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["task"] == "segmentation" and metrics["classes"] == ["background", "circle", "square", "triangle"]
    assert 0.0 <= metrics["test_mean_iou"] <= 1.0 and 0.0 < metrics["test_pixel_accuracy"] <= 1.0
    assert metrics["test_accuracy"] == metrics["test_pixel_accuracy"]
    assert set(metrics["test_iou"]) == set(metrics["classes"])
    assert "val_mean_iou" in metrics["history"][0]
    assert 0.0 < metrics["history"][0]["train_accuracy"] <= 1.0  # correct pixels / pixels
    trained = result.state.model.state_dict()
    assert any(not torch.equal(initial[k], trained[k].cpu()) for k in initial)
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())


def test_segmentation_learns_shapes(tmp_path) -> None:
    """A few epochs of a small U-Net already beat the all-background answer on mean IoU.

    (The benchmark, ``benchmarks/segmentation.py``, trains to mean IoU >= 0.85.)
    """
    cfg = TrainConfig.from_dict({**SHAPES, "model": "unet", "model_kwargs": {"widths": [8, 16]}, "epochs": 6,
                                 "data_opts": {"n": 160, "size": 32}, "limit_test": 32, "lr": 1e-2})  # fmt: skip
    metrics = fit(cfg, tmp_path / "unet").metrics
    # All background would score IoU = background share (< 0.9) for one class and 0 for three: < 0.23.
    assert metrics["test_iou"]["background"] > 0.95, metrics["test_iou"]  # shapes found where they are
    assert metrics["test_mean_iou"] > 0.3, metrics["test_iou"]


def test_reconstruction_with_the_autoencoder(tmp_path) -> None:
    cfg = TrainConfig.from_dict({**SHAPES, "model": "conv_autoencoder", "model_kwargs": TINY_KW["conv_autoencoder"],
                                 "epochs": 2, "flip": False, "translate": 0, "lr": 1e-2})  # fmt: skip
    result = fit(cfg, tmp_path / "ae")
    metrics = result.metrics
    assert metrics["task"] == "reconstruction" and metrics["test_accuracy"] is None
    assert metrics["test_mse"] > 0 and metrics["confusion_matrix"] is None
    losses = [r["train_loss"] for r in metrics["history"]]
    assert losses[1] < losses[0] and metrics["history"][0]["train_accuracy"] is None
    x = torch.randn(2, 1, 32, 32)
    assert result.state.model(x).shape == x.shape  # an image out for an image in
    assert json.loads((result.run_dir / "model.json").read_text())["num_classes"] == 1  # = output channels
    with pytest.raises(ValueError, match=r"shapes must match; received output \(2, 4, 8, 8\)"):
        task_loss("reconstruction", torch.zeros(2, 4, 8, 8), torch.zeros(2, 1, 8, 8))


def test_segmentation_masks_move_with_their_images() -> None:
    """Flip and translate are applied to image and mask alike: without pixel noise, bright = shape."""
    cfg = TrainConfig.from_dict({**SHAPES, "model": "unet", "data_opts": {"n": 32, "size": 32, "noise": 0.0},
                                 "channels_last": False, "translate": 4})  # fmt: skip
    data = load_data(cfg)
    env = Env(device=torch.device("cpu"), precision="fp32", dist=DistInfo())
    images, masks = data.train.images[:16], data.train.masks[:16]
    assert torch.equal(images[:, 0] > 120, masks > 0)  # the property the test relies on
    x, target = _prepare_batch(images, masks, cfg, data, env, torch.Generator().manual_seed(5))
    pixels = x[:, 0] * data.std[0] + data.mean[0]  # undo the normalisation, back to 0..1
    assert not torch.equal(target, masks)  # something moved
    assert torch.equal(pixels > 120 / 255, target > 0)


def test_mixup_is_refused_where_it_would_be_ignored() -> None:
    # the step mixes only classification batches: mixup_alpha on shapes trained without it, without a word
    with pytest.raises(ValueError, match=r"mixup_alpha=0\.2 applies to classification .* task is segmentation"):
        load_data(TrainConfig(**{**SHAPES, "mixup_alpha": 0.2}))
