"""The mutable state of a run, and its round trip through ``train_state.safetensors`` for ``--resume``.

Tensors (weights, EMA, optimizer moments, RNG states) are stored flat under prefixes such as
``model/``, ``ema/``, ``optim/<param index>/<name>``; everything else (epoch, step, history,
optimizer hyper-parameters, grad-scaler scale) goes to JSON in the same file. Nothing is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel

from cnnlab.errors import CheckpointError
from cnnlab.train.checkpoint import (
    load_state_dict_checked,
    load_train_state,
    read_train_state_info,
    save_train_state,
)
from cnnlab.train.config import absolute_paths

__all__ = ["TrainState", "check_resume_settings", "check_same_settings", "restore_state", "save_state"]


@dataclass
class TrainState:
    """Where the run stands. ``epoch`` counts completed epochs; ``batch`` the steps done in the current one."""

    model: nn.Module  # the bare model (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None = None
    scaler: torch.amp.GradScaler | None = None
    epoch: int = 0
    step: int = 0
    batch: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)  # running sums of the interrupted epoch
    aug_generator: torch.Generator = field(default_factory=torch.Generator)
    # Every rank's augmentation generator state, gathered before a mid-epoch save in a multi-process run
    # (each rank draws its own augmentation stream); None in a single process.
    rank_aug_states: list[torch.Tensor] | None = None

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate and ship: the EMA when enabled, else the trained model."""
        return self.ema.module if self.ema is not None else self.model


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in sd["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{name}"] = value
            elif value is not None:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_state(path: str | Path, state: TrainState, config: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``path`` (one safetensors file, JSON info in its header)."""
    tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in state.model.state_dict().items()}
    if state.ema is not None:
        tensors.update({f"ema/{k}": v for k, v in state.ema.state_dict().items()})
    optim_tensors, optim_info = _optimizer_tensors(state.optimizer)
    tensors.update(optim_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/aug"] = state.aug_generator.get_state()
    for rank, aug_state in enumerate(state.rank_aug_states or []):
        tensors[f"rng/aug_rank/{rank}"] = aug_state
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    info = {
        "epoch": state.epoch,
        "step": state.step,
        "batch": state.batch,
        "train_seconds": state.train_seconds,
        "history": state.history,
        "partial": state.partial,
        "optimizer": optim_info,
        "scaler": None if state.scaler is None else {"scale": float(state.scaler.get_scale())},
        "config": config,
    }
    return save_train_state(path, tensors, info)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


RESUME_MAY_CHANGE = ("epochs", "progress", "threads", "device")  # settings that may change between sessions
# The settings that `cnnlab train` takes as options of their own (the rest come from --set key=value).
SETTING_FLAGS = {"model": "--model", "data": "--data", "seed": "--seed", "data_dir": "--data-dir",
                 "init_from": "--init-from", "freeze": "--freeze", "limit_train": "--limit-train"}  # fmt: skip


def check_same_settings(info: dict[str, Any], config: dict[str, Any]) -> None:
    """``--resume`` continues a run exactly: ``config`` must equal the saved one, except ``RESUME_MAY_CHANGE``.

    >>> check_same_settings({"config": {"data": "mnist", "epochs": 2}}, {"data": "mnist", "epochs": 4})
    >>> check_same_settings({"config": {"data": "mnist"}}, {"data": "folder:/pics"})
    Traceback (most recent call last):
    cnnlab.errors.CheckpointError: --resume: the settings differ from the interrupted run's (--data: 'mnist' -> ...
    """
    saved = absolute_paths(info.get("config") or {})  # a run saved before paths were made absolute
    # With init_from (compared itself), the checkpoint decides the model: runs saved before the model was
    # recorded from it say "fastnet" whatever they fine-tuned.
    same_source = config.get("init_from") and saved.get("init_from") == config.get("init_from")
    ignored = (*RESUME_MAY_CHANGE, "model") if same_source else RESUME_MAY_CHANGE
    changed = sorted(k for k in config if k not in ignored and saved.get(k) != config[k])
    if not changed:
        return
    diffs = ", ".join(f"{SETTING_FLAGS.get(k, k)}: {saved.get(k)!r} -> {config[k]!r}" for k in changed[:5])
    raise CheckpointError(
        f"--resume: the settings differ from the interrupted run's ({diffs}); an exact continuation "
        "needs the same settings. Run with the original options (--resume takes every setting from the run; "
        "only --epochs may grow), or start a new --out directory."
    )


def check_resume_settings(path: str | Path, config: dict[str, Any]) -> None:
    """:func:`check_same_settings` against the state file at ``path``, before any data is loaded; and
    refuse a run with nothing left to train (its epochs done, and ``--epochs`` not raised)."""
    info = read_train_state_info(path)
    check_same_settings(info, config)
    done, wanted = int(info.get("epoch", 0)), int(config.get("epochs", 0))
    finished = (Path(path).parent / "metrics.json").is_file()  # else: killed before its final test pass
    if done >= wanted and finished:  # a part-done epoch (batch > 0) is epoch done + 1, beyond --epochs too
        raise CheckpointError(
            f"--resume: the run in {Path(path).parent} has already completed {done} epoch"
            f"{'' if done == 1 else 's'}, and --epochs is {wanted}: there is nothing left to train, and the run "
            f"is unchanged. To train it further, pass a larger --epochs (e.g. --resume --epochs {done + 2}); its "
            "report and pictures are made with `cnnlab report` and `cnnlab viz`."
        )


def restore_state(path: str | Path, state: TrainState, config: dict[str, Any], rank: int = 0) -> None:
    """Load ``path`` into ``state`` in place; the run's config must match the saved one (except epochs).

    ``rank`` picks this process's augmentation stream when the state was saved by a multi-process run.
    """
    tensors, info = load_train_state(path)
    check_same_settings(info, config)
    saved = [len(g["params"]) for g in info["optimizer"]["param_groups"]]
    wanted = [len(g["params"]) for g in state.optimizer.param_groups]
    if saved != wanted:  # torch would raise a bare ValueError about "parameter group" sizes
        raise CheckpointError(
            f"--resume: the optimizer state in {path} trains {sum(saved)} parameter tensors (per group: {saved}), "
            f"but this run's model trains {sum(wanted)} ({wanted}); the settings match, so the "
            "cnnlab that saved the run trained a different set of them (a newer version freezes FastNet's whole "
            "whitened stem, batch norm included). Nothing was changed. Resume with the cnnlab version that saved "
            f"the run, or start a new run from its weights: --init-from {Path(path).parent}."
        )
    load_state_dict_checked(state.model, _prefixed(tensors, "model/"), repr(str(path)))
    if state.ema is not None:
        state.ema.load_state_dict(_prefixed(tensors, "ema/"))
    groups = info["optimizer"]["param_groups"]
    optim_state: dict[int, dict[str, Any]] = {}
    for key, value in _prefixed(tensors, "optim/").items():
        index, name = key.split("/", 1)
        optim_state.setdefault(int(index), {})[name] = value
    for index, scalars in info["optimizer"]["scalars"].items():
        optim_state.setdefault(int(index), {}).update(scalars)
    state.optimizer.load_state_dict({"state": optim_state, "param_groups": groups})
    torch.set_rng_state(tensors["rng/torch"])
    state.aug_generator.set_state(tensors.get(f"rng/aug_rank/{rank}", tensors["rng/aug"]))
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    if state.scaler is not None and info.get("scaler"):
        state.scaler.update(float(info["scaler"]["scale"]))
    state.epoch, state.step, state.batch = int(info["epoch"]), int(info["step"]), int(info["batch"])
    state.train_seconds = float(info["train_seconds"])
    state.history = list(info["history"])
    state.partial = dict(info.get("partial") or {})
