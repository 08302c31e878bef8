"""The GPU recipe: when CUDA is present, ``--recipe default`` becomes airbench-style training.

On a GPU the CPU recipe's choices (a tiny net, fp32 on CPUs without native bf16, batches copied
from host memory) leave the device idle. The ``gpu`` recipe keeps the whole dataset resident on the
device, trains a wider FastNet in half precision (bf16 autocast, or fp16 with a gradient scaler on
GPUs without bf16), channels_last, with the airbench tricks (label smoothing 0.2, Nesterov SGD,
weight EMA, flips and flip TTA), and can ``torch.compile`` the training step (Keller Jordan's
airbench, 2024: CIFAR-10 to 94% in seconds on one A100). It applies to Fashion-MNIST and CIFAR-10;
on a machine without CUDA it is simply never selected.

The selection is a pure function of ``cuda_available``, so it is tested on any machine:

>>> select_recipe("default", "cifar10", cuda_available=True)
'gpu'
>>> select_recipe("default", "cifar10", cuda_available=False)
'default'
>>> select_recipe("long", "fashion-mnist", cuda_available=True)  # only the default switches
'long'
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.loop import FitResult
    from cnnlab.train.setup import RunData

__all__ = ["GPU_DATASETS", "GPU_RECIPE", "compiled_step", "fit_resident", "resident", "select_recipe"]

GPU_DATASETS = ("fashion-mnist", "cifar10")  # the datasets the GPU recipe was designed for

# Overrides of the TrainConfig defaults for the GPU path (the ``gpu`` recipe in recipes.py).
GPU_RECIPE: dict[str, Any] = {
    "model_kwargs": {"widths": [64, 128, 256, 512], "blocks": [0, 1, 1]},  # ~210 M MACs at 32x32
    "epochs": 16,  # passes over the training data
    "batch_size": 512,  # images per step (lr scales linearly from 0.2 @ 256)
    "label_smoothing": 0.2,  # airbench's value
    "ema_decay": 0.99,  # per-step weight EMA (about 100 steps: one epoch of CIFAR-10 at batch 512)
    "flip": True,  # label-safe for both datasets: a mirrored shirt or boot is still a shirt or boot
    "tta_flip": True,  # average the logits of the image and its mirror
    "translate": 2,  # pixels
    "device": "cuda",  # the recipe only exists where CUDA does
    "precision": "auto",  # bf16 where the GPU has it, else fp16 with a gradient scaler
    "channels_last": True,  # NHWC: tensor-core convolutions
    "eval_batch_size": 2048,  # images per forward pass in evaluation
}


def select_recipe(name: str, data: str, *, cuda_available: bool) -> str:
    """The recipe to run: ``gpu`` for ``default`` on a GPU with a supported dataset, else ``name``."""
    if name == "default" and cuda_available and data in GPU_DATASETS:
        return "gpu"
    return name


def resident(data: RunData, device: torch.device | str) -> RunData:
    """All three splits moved to ``device`` once, so no batch crosses the host-device bus.

    The loader, the augmentations and the evaluation index these tensors where they lie.
    """
    device = torch.device(device)

    def move(ds: Any) -> Any:
        return replace(
            ds, images=ds.images.to(device), labels=ds.labels.to(device),
            masks=None if ds.masks is None else ds.masks.to(device),
            extras={k: v.to(device) for k, v in ds.extras.items()},
        )  # fmt: skip

    return replace(data, train=move(data.train), val=move(data.val), test=move(data.test))


def compiled_step(step_fn: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """A ``train_step`` that runs the network through ``torch.compile`` (compiled once per network).

    The compiled module shares its parameters with the original, so the optimizer, the EMA and the
    checkpoints see the same weights.
    """
    from cnnlab.train.loop import train_step

    inner = step_fn or train_step
    cache: dict[int, nn.Module] = {}

    def step(net: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if id(net) not in cache:
            cache[id(net)] = torch.compile(net)  # type: ignore[assignment]
        return inner(cache[id(net)], *args, **kwargs)

    return step


def check_cpu_compiler() -> None:
    """Raise unless torch.compile's Inductor can build CPU kernels: it needs a C++ compiler ($CXX or g++).

    Without one the first training step failed with Inductor's raw InvalidCxxCompiler traceback.
    """
    import shutil

    from cnnlab.errors import CnnlabError

    wanted = os.environ.get("CXX") or "g++"
    if shutil.which(wanted) is None:
        raise CnnlabError(
            f"--compile on a CPU needs a C++ compiler: torch.compile's Inductor backend builds its kernels with "
            f"{wanted!r} (set by $CXX, else g++), which is not on PATH. Install one (apt-get install g++), point "
            "CXX at another, or train without --compile (the default CPU recipe runs eagerly)."
        )


def fit_resident(
    cfg: TrainConfig, out_dir: str | Path | None = None, *, compile: bool = False, **kwargs: Any
) -> FitResult:
    """``fit()`` with the dataset resident on ``cfg.device`` (and optionally a compiled step)."""
    from cnnlab.train.loop import fit
    from cnnlab.train.runfiles import check_run_dir
    from cnnlab.train.setup import load_data
    from cnnlab.train.tricks import resolve_device

    if out_dir:  # before the data is loaded (fit() checks again)
        check_run_dir(out_dir, resume=bool(kwargs.get("resume")), overwrite=bool(kwargs.get("overwrite")))
    device = resolve_device(cfg.device)
    if compile and device.type == "cpu":
        check_cpu_compiler()
    data = resident(load_data(cfg), device) if device.type == "cuda" else load_data(cfg)
    if compile:
        kwargs["step_fn"] = compiled_step(kwargs.get("step_fn"))
    return fit(cfg, out_dir, data=data, **kwargs)
