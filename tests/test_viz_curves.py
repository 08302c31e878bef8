"""Training curves, confusion matrix and misclassified examples: panels, counts and picture sizes."""

from __future__ import annotations

import pytest
import torch

from cnnlab.viz.curves import confusion_figure, confusion_matrix, curve_series, curves_figure, misclassified_figure


def test_curve_series_sorts_keys_into_panels() -> None:
    history = [
        {"epoch": 1, "step": 7, "lr": 0.1, "train_loss": 2.0, "val_loss": 1.5, "train_accuracy": 0.3, "note": "x"},
        {"epoch": 2, "step": 14, "lr": 0.05, "train_loss": 1.0, "val_loss": float("nan"), "train_accuracy": 0.6},
    ]
    series = curve_series(history)
    assert sorted(series) == ["accuracy", "learning rate", "loss"]
    assert series["loss"]["train_loss"] == ([1.0, 2.0], [2.0, 1.0])
    assert series["loss"]["val_loss"] == ([1.0], [1.5])  # non-finite values are left out
    assert series["learning rate"] == {"lr": ([1.0, 2.0], [0.1, 0.05])}
    assert "step" not in str(series) and "note" not in str(series)


def test_curves_figure_has_one_panel_per_kind() -> None:
    three = curves_figure([{"epoch": 1, "loss": 1.0, "acc": 0.5, "lr": 0.1}])
    one = curves_figure([{"epoch": 1, "loss": 1.0}])
    assert three.shape == (300, 1200, 3) and one.shape == (300, 400, 3)  # 4 x 3 inches per panel at 100 dpi
    with pytest.raises(ValueError, match="no loss, accuracy or lr values to plot; received keys"):
        curves_figure([{"epoch": 1, "step": 3}])


def test_confusion_matrix_counts() -> None:
    y_true = torch.tensor([0, 0, 1, 2, 2, 2])
    y_pred = torch.tensor([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert int(cm.trace()) == int((y_true == y_pred).sum()) and int(cm.sum()) == 6
    picture = confusion_figure(cm, ["a", "b", "c"])
    assert picture.ndim == 3 and picture.shape[0] == 350 and picture.shape[1] == 450


def test_misclassified_shows_only_wrong_images() -> None:
    images = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
    images[1] = 255  # the one wrong image is white; the rest black
    y_true = torch.tensor([0, 1, 0, 1, 0, 1])
    y_pred = torch.tensor([0, 0, 0, 1, 0, 1])
    picture = misclassified_figure(images, y_true, y_pred, ["cat", "dog"])
    assert picture.shape == (170, 150, 3)  # one tile: 1.5 x 1.7 inches
    assert (picture == 255).all(-1).mean() > 0.5 and not (picture.sum(-1) == 0).any()  # no black image drawn
