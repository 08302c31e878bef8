"""Recipes: named sets of :class:`~cnnlab.train.config.TrainConfig` overrides (``--recipe NAME``).

A recipe is data, not code: each lists only what it changes from ``TrainConfig``'s defaults (which are
tuned for the ``default`` recipe; it adds only the weight EMA). ``--set key=value`` overrides are
applied after it.

On datasets whose classes survive a mirror image (``FLIP_SAFE``: Fashion-MNIST, CIFAR) the CPU
recipes add random horizontal flips and flip test-time augmentation; digits (MNIST) and the rotation
datasets are left unflipped. For ``fastnet`` (``WHITEN_MODELS``) they also set ``whiten``: a first
layer of patch-whitening filters computed from the training images and frozen (airbench's trick).
On a machine with CUDA, ``default`` on Fashion-MNIST or CIFAR-10 resolves to the ``gpu`` recipe
(:mod:`cnnlab.train.gpu`: airbench-style, half precision); on a CPU it stays the CPU recipe.

>>> resolve_recipe("long", cuda_available=False).epochs
24
>>> resolve_recipe(cuda_available=False).flip, resolve_recipe("default", {"data": "mnist"}, cuda_available=False).flip
(True, False)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from cnnlab.train.config import TrainConfig
from cnnlab.train.gpu import GPU_RECIPE, select_recipe

__all__ = ["FLIP_SAFE", "RECIPES", "WHITEN_MODELS", "list_recipes", "resolve_recipe"]

FLIP_SAFE = ("fashion-mnist", "cifar10", "cifar100")  # a mirrored image keeps its label
CPU_RECIPES = ("default", "long")  # flips + flip TTA on FLIP_SAFE data, whitening for WHITEN_MODELS
WHITEN_MODELS = ("fastnet",)  # the models these recipes give a whitened, frozen first layer (init_whitening)

RECIPES: dict[str, dict[str, Any]] = {
    # cnnlab's fast default (tuned on a validation split, see benchmarks/results/train_speed.md):
    # fastnet, 8 epochs of one-cycle Nesterov SGD, label smoothing 0.1, translate 1 px (+ flips), and a
    # per-step weight EMA (about one epoch's last 100 steps): on val (seeds 0/1/2) it reached 92.9/93.1/93.4
    # after 5 epochs where the raw weights of seed 0 had 92.2, and it ended level (93.88 mean both ways).
    # The whitened, frozen stem (WHITEN_MODELS) then raised the final val to 94.03/94.12/94.53.
    "default": {"ema_decay": 0.99},
    # TrainConfig's settings (no EMA) for 24 epochs (94.3% test on Fashion-MNIST in under 3 minutes); on the
    # validation split this beat fastnet with residual blocks at 7x7 and 3x3 (16 epochs), translate 2 px
    # (20 epochs) and the EMA of the default (val 94.48 vs 94.88 at the end: the EMA lags the annealed weights).
    "long": {"epochs": 24},
    # A smoke test: 5,000 images, two epochs, small batches so that it takes enough steps to learn
    # (82% on Fashion-MNIST in 3 s; the default's batch 256 gives 34 steps and 80.5%).
    "quick": {"epochs": 2, "limit_train": 5000, "limit_test": 1000, "batch_size": 64, "lr": 0.1},
    # PyTorch's MNIST example recipe: Adadelta lr 1.0, step decay 0.7 per epoch, batch 64, no tricks.
    "pytorch-mnist": {
        "optimizer": "adadelta", "lr": 1.0, "scale_lr": False, "schedule": "step", "step_gamma": 0.7,
        "batch_size": 64, "label_smoothing": 0.0, "weight_decay": 0.0, "translate": 0, "epochs": 14,
        "channels_last": False, "precision": "fp32",
    },
    # The GPU path (selected for `default` when CUDA is present): see cnnlab.train.gpu.
    "gpu": GPU_RECIPE,
    # Semantic segmentation on the generated shapes (pixel accuracy, mean IoU).
    "segmentation": {
        "data": "shapes", "model": "unet", "epochs": 20, "batch_size": 32, "optimizer": "adamw", "lr": 2e-3,
        "scale_lr": False, "weight_decay": 1e-4, "label_smoothing": 0.0, "translate": 0, "flip": True,
        "schedule": "cosine", "warmup_epochs": 1.0,
    },
}  # fmt: skip


def list_recipes() -> list[str]:
    """Recipe names, the default first."""
    return list(RECIPES)


def resolve_recipe(
    name: str = "default",
    overrides: Mapping[str, Any] | None = None,
    assignments: Iterable[str] = (),
    *,
    cuda_available: bool | None = None,
) -> TrainConfig:
    """``TrainConfig`` defaults + recipe ``name`` + ``overrides`` (a dict) + ``assignments`` (``k=v``).

    ``default`` becomes ``gpu`` when CUDA is available (``cuda_available=None``: ask torch) and the
    dataset is one the GPU recipe was made for; ``cfg.recipe`` records the recipe that was applied.
    """
    if name not in RECIPES:
        close = difflib.get_close_matches(name, list(RECIPES), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}; received {name!r}.{hint}")
    assignments = list(assignments)
    _check_no_recipe_override(overrides, assignments)
    cfg = _apply(name, overrides, assignments)
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    chosen = select_recipe(name, cfg.data, cuda_available=cuda_available)
    if chosen != name and (cfg.device == "auto" or cfg.device.startswith("cuda")):  # device=cpu: stay on the CPU
        return _apply(chosen, overrides, assignments)
    extra: dict[str, Any] = {}  # applied before the overrides: --set flip=false or whiten=false still wins
    if name in CPU_RECIPES and cfg.data in FLIP_SAFE:
        extra.update(flip=True, tta_flip=True)
    if name in CPU_RECIPES and cfg.model in WHITEN_MODELS and not cfg.init_from:
        extra.update(whiten=True)
    return _apply(name, overrides, assignments, extra) if extra else cfg


def _check_no_recipe_override(overrides: Mapping[str, Any] | None, assignments: list[str]) -> None:
    """``recipe`` only records where the settings came from: setting it would not apply that recipe."""
    from cnnlab.train.config import parse_assignments

    given = {**(overrides or {}), **parse_assignments(assignments)}
    if "recipe" in given:
        raise ValueError(
            f"--set recipe={given['recipe']}: the recipe field only records which recipe a run's settings came "
            "from; setting it does not apply that recipe's settings, so the run would record one recipe and train "
            f"with another. Choose the recipe with --recipe {given['recipe']} (one of {', '.join(RECIPES)})."
        )


def _apply(
    name: str, overrides: Mapping[str, Any] | None, assignments: Iterable[str], extra: Mapping[str, Any] | None = None
) -> TrainConfig:
    cfg = TrainConfig.from_dict({**RECIPES[name], **(extra or {}), "recipe": name})
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg.with_overrides(list(assignments))
