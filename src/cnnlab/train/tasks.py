"""What is learned and how it is scored: classification, segmentation, reconstruction.

Each task turns a model output and a batch into a loss, and accumulates evaluation statistics
(a confusion matrix, or a squared-error sum) into the metrics of ``metrics.json``.

>>> s = new_stats("classification", 3)
>>> update_stats(s, "classification", torch.tensor([[2., 0, 0], [0, 3, 0]]), torch.tensor([0, 2]))
>>> summarize(s, "classification", ["a", "b", "c"])["accuracy"]
0.5
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["new_stats", "summarize", "task_loss", "update_stats"]


def task_loss(task: str, out: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy (classification: ``(B, K)`` vs ``(B,)``; segmentation: ``(B, K, H, W)`` vs
    ``(B, H, W)``), with label smoothing; mean squared error for reconstruction (target = input)."""
    if task == "reconstruction":
        if out.shape != target.shape:
            raise ValueError(
                f"task=reconstruction compares the model output with its input, so their shapes must match; "
                f"received output {tuple(out.shape)} for input {tuple(target.shape)}. Use a model that "
                "returns an image of the input's size and channels (e.g. conv_autoencoder)."
            )
        return F.mse_loss(out.float(), target.float())
    return F.cross_entropy(out.float(), target, label_smoothing=label_smoothing)


def new_stats(task: str, num_classes: int) -> dict[str, Any]:
    """Empty accumulators: a ``(K, K)`` confusion matrix (rows: truth, columns: prediction), sums."""
    k = max(num_classes, 1)
    return {"confusion": torch.zeros(k, k, dtype=torch.int64), "loss_sum": 0.0, "count": 0, "sq_sum": 0.0}


def update_stats(
    stats: dict[str, Any], task: str, out: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
) -> None:
    """Add one evaluated batch to ``stats`` (``out`` are logits, or images for reconstruction).

    Class ids must lie in ``[0, K)`` for the ``K`` classes of ``stats``, and ``out`` must have ``K``
    scores per sample (or pixel): the confusion matrix is indexed by ``truth * K + prediction``, so a
    wider output or an ignore id such as -100 would land in another class's cell.
    """
    if task != "reconstruction":
        _check_classes(stats["confusion"].shape[0], out, target)
    n = int(target.shape[0])
    stats["loss_sum"] += float(task_loss(task, out, target, label_smoothing)) * n
    stats["count"] += n
    if task == "reconstruction":
        stats["sq_sum"] += float((out.float() - target.float()).square().sum())
        stats["numel"] = stats.get("numel", 0) + target.numel()
        return
    k = stats["confusion"].shape[0]
    pred = out.argmax(1).flatten().cpu()  # (B,) or (B*H*W,) class ids
    truth = target.flatten().cpu()
    stats["confusion"] += torch.bincount(truth * k + pred, minlength=k * k).view(k, k)


def _check_classes(k: int, out: torch.Tensor, target: torch.Tensor) -> None:
    if out.ndim < 2 or out.shape[1] != k:
        raise ValueError(
            f"update_stats: out must hold one score per class, {k} along dimension 1 for the {k} classes of "
            f"these stats; received out of shape {tuple(out.shape)}. Build the stats with "
            f"new_stats(task, {out.shape[1] if out.ndim >= 2 else 'num_classes'}) or give the model a {k}-class head."
        )
    if target.numel() == 0:
        return
    low, high = (int(v) for v in torch.aminmax(target))
    if low < 0 or high >= k:
        raise ValueError(
            f"update_stats: target must hold class ids in [0, {k}) for the {k} classes of these stats; received "
            f"ids from {low} to {high}. Ignore ids (such as -100) are not supported: map those pixels to a class "
            "(e.g. background 0) or drop those samples before evaluating."
        )


def summarize(stats: dict[str, Any], task: str, classes: list[str]) -> dict[str, Any]:
    """Metrics from accumulated statistics.

    classification: ``loss``, ``accuracy``, ``per_class_accuracy`` (dict by class name),
    ``confusion_matrix``; segmentation: ``loss``, ``pixel_accuracy``, ``mean_iou``, ``iou`` per
    class, ``accuracy`` (= pixel accuracy); reconstruction: ``loss``, ``mse``.
    """
    out: dict[str, Any] = {"loss": stats["loss_sum"] / max(stats["count"], 1)}
    if task == "reconstruction":
        out["mse"] = stats["sq_sum"] / max(stats.get("numel", 1), 1)
        return out
    conf = stats["confusion"].double()
    correct = conf.diag()
    total = conf.sum().clamp_min(1)
    per_true = conf.sum(1)
    if task == "classification":
        out["accuracy"] = float(correct.sum() / total)
        out["per_class_accuracy"] = {
            name: float(correct[i] / per_true[i]) if per_true[i] > 0 else None for i, name in enumerate(classes)
        }
        out["confusion_matrix"] = stats["confusion"].tolist()
        return out
    union = per_true + conf.sum(0) - correct  # |truth ∪ prediction| per class
    present = union > 0
    iou = torch.where(present, correct / union.clamp_min(1), torch.zeros_like(correct))
    out["pixel_accuracy"] = float(correct.sum() / total)
    out["accuracy"] = out["pixel_accuracy"]
    out["mean_iou"] = float(iou[present].mean()) if bool(present.any()) else 0.0
    out["iou"] = {name: float(iou[i]) if bool(present[i]) else None for i, name in enumerate(classes)}
    return out
