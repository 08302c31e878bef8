"""``fit()``: the one training loop. It reads top to bottom: schedule, step, eval, checkpoint, log.

Customise it through :class:`Hooks` (``on_step``, ``on_epoch_end``, ``on_train_end``) or by passing
another ``train_step``; the loop itself stays as it is. Seeds, threads, precision and the process
group are set in one place, :func:`configure`.

>>> from cnnlab.train.config import TrainConfig
>>> cfg = TrainConfig(data="shapes", model="fastnet", task="classification", epochs=1)  # doctest: +SKIP
>>> result = fit(cfg, "runs/demo")  # doctest: +SKIP
>>> result.metrics["test_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import cnnlab
from cnnlab.cpuinfo import cpu_model
from cnnlab.data import augment
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import TensorLoader, normalize
from cnnlab.errors import CheckpointError, CnnlabError, TrainingInterrupted
from cnnlab.models.spec import is_spec_path
from cnnlab.train import tasks
from cnnlab.train.checkpoint import STATE_NAME, model_label
from cnnlab.train.config import TrainConfig, with_absolute_paths
from cnnlab.train.distributed import (
    DistInfo,
    agree_on_step,
    average_buffers,
    cleanup,
    gather_states,
    init_distributed,
    sum_over_ranks,
    wrap_model,
)
from cnnlab.train.optim import build_optimizer, peak_lr
from cnnlab.train.progress import Progress
from cnnlab.train.runfiles import RunFiles, check_run_dir, default_run_dir
from cnnlab.train.schedule import lr_factor
from cnnlab.train.setup import RunData, build_model, check_model_matches_source, load_data, source_model
from cnnlab.train.state import TrainState, check_resume_settings, restore_state
from cnnlab.train.tricks import (
    autocast,
    make_ema,
    predict_logits,
    resolve_device,
    resolve_precision,
    reuse_freed_memory,
    set_train_mode,
)

__all__ = ["Env", "FitResult", "Hooks", "TrainingDiverged", "configure", "evaluate", "fit", "train_step"]


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Env:
    """Where and how the run computes: device, precision, process group."""

    device: torch.device
    precision: str
    dist: DistInfo


@dataclass
class Hooks:
    """Named callbacks: ``on_step(state, info)``, ``on_epoch_end(state, record)``, ``on_train_end(state, metrics)``."""

    on_step: list[Callable[[TrainState, dict[str, Any]], None]] = field(default_factory=list)
    on_epoch_end: list[Callable[[TrainState, dict[str, Any]], None]] = field(default_factory=list)
    on_train_end: list[Callable[[TrainState, dict[str, Any]], None]] = field(default_factory=list)


@dataclass
class FitResult:
    """What ``fit()`` returns: the final metrics, the run directory and the state (model inside)."""

    metrics: dict[str, Any]
    run_dir: Path
    state: TrainState


def configure(cfg: TrainConfig) -> Env:
    """Set seeds, threads, determinism and the process group; choose device and precision."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        reuse_freed_memory()  # fewer page faults on every step's activations (1.02x on CPU)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    return Env(device=device, precision=resolve_precision(cfg.precision, device), dist=dist)


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    # Independent, reproducible streams per (seed, epoch, purpose): shuffling does not depend on
    # how many random numbers augmentation drew, so a resumed epoch sees the same batches.
    return (seed * 1_000_003 + epoch * 9_176 + stream * 7_919) % (2**63)


def _prepare_batch(
    images: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, data: RunData, env: Env, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 batch -> augmented, normalised float batch (channels_last) and its target."""
    images, target = images.to(env.device, non_blocking=True), target.to(env.device, non_blocking=True)
    if cfg.flip:
        which = augment.draw_flips(images.shape[0], 0.5, gen)
        images = augment.flip(images, which)
        if data.task == "segmentation":  # (B, H, W) -> (B, 1, H, W) and back: same flips for the masks
            target = augment.flip(target.unsqueeze(1), which).squeeze(1)
    if cfg.translate > 0:
        shifts = augment.draw_shifts(images.shape[0], cfg.translate, gen)
        images = augment.translate(images, shifts, fill=0)
        if data.task == "segmentation":
            target = augment.translate(target.unsqueeze(1), shifts, fill=0).squeeze(1)
    x = normalize(images, data.mean, data.std)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if data.task == "reconstruction":
        target = x
    return x, target


def train_step(
    net: nn.Module, state: TrainState, x: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, env: Env,
    task: str, gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step on a prepared batch; returns the loss and the number correct (or None)."""
    mixed = augment.mixup(x, target, cfg.mixup_alpha, gen) if cfg.mixup_alpha > 0 and task == "classification" else None
    with autocast(env.precision, env.device):
        out = net(mixed.inputs if mixed is not None else x)
    if mixed is not None:
        loss = mixed.lam * tasks.task_loss(task, out, mixed.targets_a, cfg.label_smoothing) + (
            1 - mixed.lam
        ) * tasks.task_loss(task, out, mixed.targets_b, cfg.label_smoothing)
    else:
        loss = tasks.task_loss(task, out, target, cfg.label_smoothing)
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        state.scaler.unscale_(state.optimizer)
    else:
        loss.backward()  # type: ignore[no-untyped-call]
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    correct = None if task == "reconstruction" or mixed is not None else (out.argmax(1) == target).sum()
    return loss.detach(), correct


@torch.no_grad()
def evaluate(model: nn.Module, ds: ImageDataset, data: RunData, cfg: TrainConfig, env: Env) -> dict[str, Any]:
    """Metrics of ``model`` on ``ds`` (no augmentation; flip TTA when ``cfg.tta_flip``)."""
    was_training = model.training
    model.eval()
    stats = tasks.new_stats(data.task, len(data.classes))
    target_all = ds.masks if data.task == "segmentation" else ds.labels
    if target_all is None:  # segmentation datasets always have masks (checked by ImageDataset)
        raise RuntimeError(f"cnnlab bug: {ds.name} has no {data.task} targets.")
    for lo in range(0, len(ds), cfg.eval_batch_size):
        x = normalize(ds.images[lo : lo + cfg.eval_batch_size].to(env.device), data.mean, data.std)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = x if data.task == "reconstruction" else target_all[lo : lo + cfg.eval_batch_size].to(env.device)
        with autocast(env.precision, env.device):
            out = predict_logits(model, x, cfg.tta_flip and data.task != "reconstruction")
        tasks.update_stats(stats, data.task, out, target, cfg.label_smoothing)
    model.train(was_training)
    return tasks.summarize(stats, data.task, data.classes)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; `kill`, `docker stop`, a scheduler's pre-emption


@contextmanager
def _signals_request_stop() -> Iterator[dict[str, int]]:
    """Turn the first Ctrl-C or SIGTERM into a request to stop after the current step (a second one aborts).

    ``flag["stop"]`` is the request; ``flag["signum"]`` the signal that made it (SIGINT when none did).
    """
    flag = {"stop": False, "signum": int(signal.SIGINT)}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"], flag["signum"] = True, signum

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _check_finite(loss: torch.Tensor, state: TrainState, lr: float, run: RunFiles) -> None:
    if not math.isfinite(float(loss)):
        kept = f"the last good checkpoint (epoch {state.epoch}) is kept in {run.dir}" if state.history else (
            "no checkpoint was written yet (it diverged in the first epoch)")
        raise TrainingDiverged(
            f"training diverged: the loss became {float(loss)} at step {state.step + 1} (epoch "
            f"{state.epoch + 1}) with learning rate {lr:.6g}; {kept}. Lower the learning rate "
            f"(--set lr={lr / 10:.3g}), add gradient clipping (--set grad_clip=1.0) or warm-up."
        )


def _summary(prefix: str, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("loss", "accuracy", "mean_iou", "pixel_accuracy", "mse")
    return {f"{prefix}_{k}": metrics[k] for k in keys if k in metrics}


def resume_command(world_size: int, run_dir: str | Path) -> str:
    """The command that continues a stopped run: with torchrun and as many processes for a DDP run.

    >>> resume_command(1, "runs/a")
    'cnnlab train --resume --out runs/a'
    >>> resume_command(2, "runs/a")
    'torchrun --nproc_per_node 2 -m cnnlab train --resume --out runs/a'
    """
    launch = f"torchrun --nproc_per_node {world_size} -m cnnlab train" if world_size > 1 else "cnnlab train"
    return f"{launch} --resume --out {run_dir}"


def _resumed_meta(out_dir: str | Path | None) -> dict[str, Any] | None:
    """The ``model.json`` of the run to resume (None before its first epoch ended, when it has none)."""
    from cnnlab.train.checkpoint import META_NAME, read_meta

    return read_meta(out_dir) if out_dir is not None and (Path(out_dir) / META_NAME).is_file() else None


def _source_model(init_from: str, resume: bool) -> str:
    try:
        return source_model(init_from)
    except CheckpointError as err:
        if not resume:
            raise
        raise CheckpointError(
            f"--resume: this run was started with --init-from {init_from}, and it was stopped before its first "
            f"epoch ended, so it has no model.json of its own; its architecture and starting weights are in that "
            f"source, which cannot be read now ({err}). Put the source run back, or start this run again "
            "with --overwrite."
        ) from None


def fit(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    hooks: Hooks | None = None,
    data: RunData | None = None,
    step_fn: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] = train_step,
) -> FitResult:
    """Train ``cfg.model`` on ``cfg.data`` and write the run directory; see the module docstring.

    ``out_dir`` must not hold a run already, unless ``resume`` (continue it) or ``overwrite`` (delete it
    once the data and the model are ready, and train a new one there).
    """
    started = time.perf_counter()
    hooks = hooks or Hooks()
    cfg = with_absolute_paths(cfg)  # the saved config then works from any directory
    # a resumed run rebuilds its architecture from its own model.json: the source or spec file may be gone
    resumed_meta = _resumed_meta(out_dir) if resume and (cfg.init_from or is_spec_path(cfg.model)) else None
    source = None
    if cfg.init_from:  # when resuming, the run's own model.json has its architecture: the source may be gone
        source = model_label(resumed_meta) if resumed_meta is not None else _source_model(cfg.init_from, resume)
    if cfg.init_from and source is not None and source != cfg.model:
        # The checkpoint's weights fix the architecture. TrainConfig's default model means "not chosen"
        # (fit(TrainConfig(init_from=...))): record the real one; any other model is a conflict.
        if cfg.model != TrainConfig().model:
            check_model_matches_source(cfg.model, cfg.init_from, source)
        cfg = replace(cfg, model=source)
    label = Path(cfg.model).stem if is_spec_path(cfg.model) else cfg.model  # runs/<time>-small_resnet
    run_dir = Path(out_dir) if out_dir else default_run_dir(label)
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if resume:  # before loading data: a changed --data is reported as such, not as a failure to build the model
        check_resume_settings(run_dir / STATE_NAME, cfg.to_dict())
    env = configure(cfg)
    data = data or load_data(cfg, resumed_meta.get("task") if resumed_meta is not None else None)
    model, meta = build_model(cfg, data, resumed_meta)
    model = model.to(env.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    state = TrainState(
        model=model,
        optimizer=build_optimizer(model, cfg),
        ema=make_ema(model, cfg.ema_decay) if cfg.ema_decay > 0 else None,
        scaler=torch.amp.GradScaler("cuda") if env.precision == "fp16" else None,
    )
    config = cfg.to_dict()
    run = RunFiles(run_dir, enabled=env.dist.is_main, replace=overwrite, claim=out_dir is None)
    if resume:
        restore_state(run.state_path, state, config, rank=env.dist.rank)
        run.restore_files(state, meta, config)
        resumed = f"resuming {run.dir} after epoch {state.epoch}"
        resumed += f", batch {state.batch} of epoch {state.epoch + 1}" if state.batch else ""
        resumed_msg: str | None = f"{resumed} (step {state.step})"
    else:
        resumed_msg = None
    run.write_config(config)
    net = wrap_model(model, env.dist, env.device)
    per_rank_batch = max(cfg.batch_size // env.dist.world_size, 1)
    shard = math.ceil(len(data.train) / env.dist.world_size)
    target = data.train.masks if data.task == "segmentation" else data.train.labels
    if target is None:  # segmentation datasets always have masks (checked by ImageDataset)
        raise RuntimeError(f"cnnlab bug: {data.train.name} has no {data.task} targets.")
    loader = TensorLoader(
        data.train.images, target, batch_size=per_rank_batch, shuffle=True, generator=torch.Generator(),
        drop_last=shard >= per_rank_batch, rank=env.dist.rank, world_size=env.dist.world_size,
    )  # fmt: skip
    steps_per_epoch, peak = len(loader), peak_lr(cfg)
    total_steps = cfg.epochs * steps_per_epoch
    progress = Progress(cfg.progress if env.dist.is_main else "none", total_steps, initial_step=state.step)
    if resumed_msg:
        progress.message(resumed_msg)
    if run.replaced:
        progress.message(f"--overwrite: deleted the earlier run's {', '.join(run.replaced)} in {run.dir}")
    progress.message(
        f"training {model_label(meta)} on {cfg.data} ({len(data.train)} train / {len(data.val)} val / "
        f"{len(data.test)} test, task {data.task}) on {env.device} in {env.precision}; writing {run.dir}"
    )
    if not resume and (note := _new_head_note(cfg, meta, model)) is not None:  # a resumed head is restored
        progress.message(note)
    try:
        with _signals_request_stop() as interrupt:
            for epoch in range(state.epoch, cfg.epochs):
                loader.generator.manual_seed(_epoch_seed(cfg.seed, epoch, 0))
                if state.batch == 0:  # a fresh epoch (not one resumed half-way)
                    state.aug_generator.manual_seed(_epoch_seed(cfg.seed, epoch, 1 + env.dist.rank))
                    state.partial = {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0, "targets": 0.0, "seconds": 0.0}
                set_train_mode(model)
                tick = time.perf_counter()
                for i, (images, labels) in enumerate(loader):
                    if i < state.batch:
                        continue  # already done before the interruption
                    # -- schedule
                    lr = peak * lr_factor(
                        cfg.schedule, state.step, total_steps, warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
                        steps_per_epoch=steps_per_epoch, step_epochs=cfg.step_epochs, step_gamma=cfg.step_gamma,
                    )  # fmt: skip
                    for group in state.optimizer.param_groups:
                        group["lr"] = lr
                    # -- step
                    x, y = _prepare_batch(images, labels, cfg, data, env, state.aug_generator)
                    loss, correct = step_fn(net, state, x, y, cfg, env, data.task, state.aug_generator)
                    loss, interrupt["stop"] = agree_on_step(loss, bool(interrupt["stop"]), env.dist)
                    _check_finite(loss, state, lr, run)
                    state.step += 1
                    state.batch += 1
                    p = state.partial
                    p["loss_sum"] += float(loss) * x.shape[0]
                    p["seen"] += x.shape[0]
                    p["targets"] = p.get("targets", 0.0) + y.numel()  # images, or pixels for segmentation
                    p["correct"] += float(correct) if correct is not None else math.nan
                    now = time.perf_counter()
                    p["seconds"] += now - tick
                    state.train_seconds += now - tick
                    tick = now
                    progress.step(state.step, epoch + 1, p["loss_sum"] / p["seen"],
                                  p["correct"] / p["targets"] if correct is not None else None,
                                  p["seen"] / max(p["seconds"], 1e-9), lr)  # fmt: skip
                    for hook in hooks.on_step:
                        hook(state, {"loss": float(loss), "lr": lr, "epoch": epoch})
                    if interrupt["stop"]:
                        state.rank_aug_states = gather_states(state.aug_generator.get_state(), env.dist)
                        run.save_interrupted(state, config)
                        _stopped(f"at step {state.step} (epoch {epoch + 1}, batch {state.batch})", run, env, progress)
                        raise TrainingInterrupted(interrupt["signum"])
                # -- eval
                if env.dist.enabled:  # replicas agree on batch-norm statistics before eval and checkpoint
                    average_buffers(state.model, env.dist)
                    if state.ema is not None:
                        average_buffers(state.ema, env.dist)
                p = dict(state.partial)
                if env.dist.enabled:  # accuracy over every rank's shard (the loss is already the mean)
                    p["correct"], p["targets"] = sum_over_ranks([p["correct"], p.get("targets", 0.0)], env.dist)
                val = evaluate(state.eval_model, data.val, data, cfg, env)
                record = {
                    "epoch": epoch + 1, "step": state.step, "lr": lr,
                    "train_loss": p["loss_sum"] / max(p["seen"], 1),
                    "train_accuracy": None if math.isnan(p["correct"]) else p["correct"] / max(p["targets"], 1),
                    **_summary("val", val),
                    "epoch_seconds": p["seconds"],
                    "images_per_second": p["seen"] * env.dist.world_size / max(p["seconds"], 1e-9),
                }  # fmt: skip
                state.history.append(record)
                state.epoch, state.batch = epoch + 1, 0
                # -- checkpoint
                run.checkpoint(state, meta, config)
                # -- log
                progress.epoch_end(epoch + 1, {k: v for k, v in record.items() if k not in ("epoch", "lr")})
                for hook in hooks.on_epoch_end:
                    hook(state, record)
                # a signal during this epoch's evaluation or checkpoint (after its last step): stop here too, with
                # everything saved, rather than go on to the next epoch or the test split as if none came
                if sum_over_ranks([float(interrupt["stop"])], env.dist)[0] > 0:
                    _stopped(f"after epoch {epoch + 1} (step {state.step}), its checkpoint written", run, env, progress)
                    raise TrainingInterrupted(interrupt["signum"])
        # -- final number: the test split, touched once
        test = evaluate(state.eval_model, data.test, data, cfg, env)
        metrics = _final_metrics(cfg, env, data, meta, state, test, time.perf_counter() - started)
        run.write_metrics(metrics)
        progress.message(_final_line(metrics, run.dir))
        for hook in hooks.on_train_end:
            hook(state, metrics)
        return FitResult(metrics=metrics, run_dir=run.dir, state=state)
    finally:
        progress.close()
        cleanup(env.dist)


def _stopped(where: str, run: RunFiles, env: Env, progress: Progress) -> None:
    """Say where a run stopped on Ctrl-C or SIGTERM and how to continue it (the state is already saved)."""
    progress.close()
    if env.dist.is_main:  # said whatever the progress mode: the user must see it
        print(
            f"interrupted {where}; the training state is saved in {run.state_path}. Continue with: "
            f"{resume_command(env.dist.world_size, run.dir)}",
            file=sys.stderr, flush=True,
        )  # fmt: skip


def _new_head_note(cfg: TrainConfig, meta: dict[str, Any], model: nn.Module) -> str | None:
    """With ``init_from`` onto another class count: say that the head is new (random), and what trains."""
    source, classes = meta.get("init_from_num_classes"), meta["num_classes"]
    if source is None or source == classes:
        return None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    which = "with --freeze features only the new head trains" if cfg.freeze == "features" else "all layers train"
    return (
        f"--init-from {cfg.init_from}: its head predicts {source} classes and the data has {classes}, so the head "
        f"was replaced by a new, randomly initialised {classes}-class one; {which} ({trainable:,} trainable "
        "parameters)"
    )


def _final_metrics(
    cfg: TrainConfig, env: Env, data: RunData, meta: dict[str, Any], state: TrainState,
    test: dict[str, Any], wall: float,
) -> dict[str, Any]:
    last = state.history[-1] if state.history else {}
    seen = sum(r["images_per_second"] * r["epoch_seconds"] for r in state.history)
    metrics: dict[str, Any] = {
        "test_accuracy": test.get("accuracy"),
        "test_loss": test["loss"],
        **{f"test_{k}": test[k] for k in ("mean_iou", "pixel_accuracy", "mse", "iou") if k in test},
        "val_accuracy": last.get("val_accuracy"),
        "train_seconds": state.train_seconds,
        "wall_seconds": wall,
        "epochs": state.epoch,
        "steps": state.step,
        "model": model_label(meta),
        "dataset": cfg.data,
        "task": data.task,
        "params": sum(p.numel() for p in state.model.parameters()),
        "trainable_params": sum(p.numel() for p in state.model.parameters() if p.requires_grad),
        "classes": data.classes,
        "per_class_accuracy": test.get("per_class_accuracy"),
        "confusion_matrix": test.get("confusion_matrix"),
        "images_per_second": seen / max(state.train_seconds, 1e-9),
        "weights": "ema" if state.ema is not None else "raw",
        "device": str(env.device),
        "precision": env.precision,
        "world_size": env.dist.world_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cnnlab": cnnlab.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_model(),  # train_seconds mean little without it
        "recipe": cfg.recipe,
        "config": cfg.to_dict(),
        "history": state.history,
    }
    return metrics


def _final_line(metrics: dict[str, Any], run_dir: Path) -> str:
    if metrics["test_accuracy"] is not None:
        score = f"test accuracy {metrics['test_accuracy']:.4f}"
        if "test_mean_iou" in metrics:
            score += f", mean IoU {metrics['test_mean_iou']:.4f}"
    else:
        score = f"test MSE {metrics.get('test_mse', float('nan')):.5f}"
    return f"done: {score} after {metrics['epochs']} epochs, {metrics['train_seconds']:.1f} s training; {run_dir}"
