"""Everything ``fit()`` needs before the first step: data splits, normalisation, the model, its meta.

>>> from cnnlab.train.config import TrainConfig
>>> data = load_data(TrainConfig(data="shapes", data_opts={"n": 40, "size": 32}, limit_test=10))
>>> data.task, len(data.train) + len(data.val), len(data.test)
('segmentation', 40, 10)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from cnnlab.data import load_dataset, split_train_val
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import channel_stats, normalize
from cnnlab.models.spec import SpecNet, is_spec_path
from cnnlab.train.config import TrainConfig
from cnnlab.train.tricks import freeze_features, zero_gamma

__all__ = ["RunData", "build_model", "check_freeze", "check_model_matches_source", "load_data", "resolve_task",
           "source_model"]


@dataclass
class RunData:
    """The three splits (validation carved from the training split) and how to normalise them."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    task: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.train.input_size


def resolve_task(cfg: TrainConfig, ds: ImageDataset, model_task: str | None = None) -> str:
    """``auto`` -> the model's task if it is reconstruction, else the dataset's (masks: segmentation).

    The model's task is ``model_task`` when given (a resumed run's model.json), else what the ``init_from``
    checkpoint recorded, else what a registered model declares.
    """
    if cfg.task != "auto":
        return cfg.task
    declared = model_task or _declared_task(cfg)
    return "reconstruction" if declared == "reconstruction" else ds.task


def _declared_task(cfg: TrainConfig) -> str | None:
    if cfg.init_from:  # an autoencoder's checkpoint fine-tunes as one (its head is no classifier to replace)
        from cnnlab.errors import CheckpointError
        from cnnlab.train.checkpoint import read_meta

        try:
            task = read_meta(cfg.init_from).get("task")
        except CheckpointError:  # unreadable: build_model reports it
            return None
        return str(task) if task else None
    if is_spec_path(cfg.model):
        return None
    from cnnlab.models import model_info

    return model_info(cfg.model).task


def _first(ds: ImageDataset, n: int) -> ImageDataset:
    return ds if n <= 0 or n >= len(ds) else ds.subset(torch.arange(n))


def load_data(cfg: TrainConfig, model_task: str | None = None) -> RunData:
    """Load the training and test splits, hold out ``val_fraction`` of training for validation.

    ``model_task``: the task the model was trained for, where the run already has one (``--resume``).
    """
    full = _first(load_dataset(cfg.data, "train", cfg.data_dir, **cfg.data_opts), cfg.limit_train)
    test = _first(load_dataset(cfg.data, "test", cfg.data_dir, **cfg.data_opts), cfg.limit_test)
    side = min(full.input_size[1:])
    if cfg.translate >= side:
        raise ValueError(
            f"TrainConfig.translate must be smaller than the image side: it shifts each training image by up to "
            f"that many pixels, and the shorter side of the {cfg.data!r} images is {side} pixels, so a shift of "
            f"{side} or more leaves nothing of them; received translate={cfg.translate}. Use e.g. 1-4 (the "
            "default recipe uses 1)."
        )
    task = resolve_task(cfg, full, model_task)
    if cfg.mixup_alpha > 0 and task != "classification":  # the step mixes images and one-hot labels only
        raise ValueError(
            f"TrainConfig.mixup_alpha={cfg.mixup_alpha} applies to classification (it blends two images and their "
            f"labels), but this run's task is {task}, where it would be ignored. Drop --set mixup_alpha."
        )
    if task == "classification":
        _check_two_classes(full, cfg)
    train, val = _split(full, cfg)
    mean, std = channel_stats(train.images)
    std = tuple(max(s, 1e-3) for s in std)  # a constant channel would divide by zero
    return RunData(train, val, test, task, list(full.classes), mean, std)


def _check_two_classes(ds: ImageDataset, cfg: TrainConfig) -> None:
    """Classification on images of one class learns the constant answer (and reports 100% accuracy)."""
    present = [name for name, n in zip(ds.classes, ds.class_counts().tolist()) if n > 0]
    if len(present) >= 2:
        return
    cut = cfg.limit_train and len(ds) == cfg.limit_train
    limit = f" (--limit-train {cfg.limit_train} keeps only the first {cfg.limit_train} images)" if cut else ""
    raise ValueError(
        f"--data {cfg.data}: classification needs images of at least 2 classes, but the training split has "
        f"images of only {', '.join(present) or 'no class'}{limit}, so the model could only learn one answer and "
        "report 100% accuracy. Add images of the other classes (for a folder, one sub-folder per class), or train "
        "a model that needs no labels: --model conv_autoencoder."
    )


def _split(full: ImageDataset, cfg: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """``split_train_val``, its error extended with the command-line setting that fixes it."""
    try:
        return split_train_val(full, cfg.val_fraction, seed=cfg.seed)
    except ValueError as err:
        if "a larger val_fraction" not in str(err) and "a smaller val_fraction" not in str(err):
            raise
        counts = [n for n in full.class_counts().tolist() if n > 0]
        # the smallest tenth that gives (larger) or leaves (smaller) each part at least one image
        tenths = [f / 10 for f in range(1, 10) if 0 < sum(round(f / 10 * n) for n in counts) < sum(counts)]
        if not tenths:
            raise ValueError(f"{err} No val_fraction splits {sum(counts)} images into two parts: add images.") from None
        fraction = tenths[0] if "a larger" in str(err) else tenths[-1]
        raise ValueError(f"{err} With cnnlab train: --set val_fraction={fraction}.") from None


WHITEN_IMAGES = 10_000  # training images whose patches set the whitened first layer


def _whiten_first_layer(model: nn.Module, name: str, cfg: TrainConfig, data: RunData) -> None:
    """``whiten=true``: the model's ``init_whitening`` on the first training images (never val or test)."""
    if cfg.init_from:
        raise ValueError(
            f"whiten=true sets a fresh model's first layer from the data, but --init-from {cfg.init_from} already "
            "brings one from an earlier run; drop one of them (--set whiten=false keeps the loaded layer)."
        )
    init = getattr(model, "init_whitening", None)
    if not callable(init):
        raise ValueError(
            f"whiten=true, but model {name!r} has no init_whitening() for its first layer; use fastnet, or "
            "--set whiten=false."
        )
    images = normalize(data.train.images[:WHITEN_IMAGES], data.mean, data.std)
    try:
        init(images)
    except ValueError as err:
        raise ValueError(f"whiten=true on model {name!r}: {err} Or train it: --set whiten=false.") from None


def _output_shape(
    model: nn.Module, name: str, dataset: str, input_size: tuple[int, ...], geometry: str | None = None
) -> tuple[int, ...] | None:
    """``model``'s output shape for one ``input_size`` image; a one-paragraph ``ValueError`` if it cannot take it.

    The model runs on meta tensors first (no compute). If that fails, cnnlab's hook capture names the
    failing layer, and one real forward pass in eval mode on zeros (batch-norm buffers untouched)
    decides. A forward that branches on values, which meta tensors lack, therefore still trains.
    ``None``: the output is not one tensor, so the caller cannot check it. ``geometry``: how to give this model
    the data's geometry, where it is not ``--set model_kwargs`` (a spec file, a checkpoint).

    >>> _output_shape(nn.Conv2d(1, 4, 3), "tiny", "shapes", (1, 8, 8))
    (1, 4, 6, 6)
    >>> _output_shape(nn.Conv2d(1, 4, 5), "tiny", "shapes", (1, 4, 4))
    Traceback (most recent call last):
    ...
    ValueError: model 'tiny' cannot take the 'shapes' images (1x4x4): layer 'Conv2d' (Conv2d) fails on ...
    """
    from cnnlab.analysis.capture import meta_copy, meta_input, torch_reason
    from cnnlab.analysis.hooks import capture_hooks, data_dependent
    from cnnlab.errors import AnalysisError

    try:
        with torch.device("meta"), torch.no_grad():
            out = meta_copy(model)(meta_input(input_size))
        return tuple(out.shape) if isinstance(out, torch.Tensor) else None
    except Exception as err:  # the meta run failed: find out why, and whether the real model fails too
        reason = None if data_dependent(err) else torch_reason(err)
    try:
        capture_hooks(meta_copy(model), tuple(input_size))
    except AnalysisError as err:
        if not data_dependent(err):
            reason = str(err)  # names the layer
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_size))
        return (1, *out.shape[1:]) if isinstance(out, torch.Tensor) else None  # the meta run was too strict
    except Exception as err:  # whatever fails here, the user gets it as one paragraph
        reason = reason or torch_reason(err)
    finally:
        model.train(training)
    size = "x".join(str(v) for v in input_size)
    # The analysis's advice names inspect's --input, which cnnlab train does not have: the fix follows here.
    reason = re.split(r" Check the (?:--input size|input shape)", reason or "")[0]
    if geometry is None:
        geometry = (
            f"choose a model made for {size} inputs (`cnnlab models` lists each model's design input size), give "
            "this one the geometry the data needs through --set model_kwargs='{...}' (e.g. lenet5 takes 28x28 "
            "with conv1_padding=2)"
        )
    raise ValueError(
        f"model {name!r} cannot take the {dataset!r} images ({size}): {reason} Either {geometry}, or load the "
        "images at the size the model expects (folder data: --set data_opts='{\"size\": N}')."
    ) from None


def _check_output_fits_task(
    out: tuple[int, ...] | None, task: str, num_classes: int, input_size: tuple[int, ...], name: str, dataset: str
) -> None:
    """What the loss of ``task`` needs from the model's output for one image, as a one-paragraph ``ValueError``.

    >>> _check_output_fits_task((1, 10), "classification", 10, (1, 28, 28), "fastnet", "mnist")
    >>> _check_output_fits_task((1, 4, 28, 28), "classification", 4, (1, 28, 28), "segnet", "mnist")
    Traceback (most recent call last):
    ...
    ValueError: model 'segnet' returns (1, 4, 28, 28) for one image, but the task on 'mnist' is classification: ...
    """
    h, w = input_size[1:]
    expected, what, fix = {
        "classification": ((1, num_classes), "one score per class", "a classification model (`cnnlab models`)"),
        "segmentation": ((1, num_classes, h, w), "a score per class for every pixel", "a segmentation model "
                         "(unet, segnet)"),
        "reconstruction": ((1, *input_size), "an image of the input's size and channels", "an autoencoder "
                           "(conv_autoencoder)"),
    }.get(task, (None, "", ""))  # fmt: skip
    if out is None or expected is None or out == expected:
        return
    raise ValueError(
        f"model {name!r} returns {out} for one image, but the task on {dataset!r} is {task}: its loss needs "
        f"{what}, shape {expected}. Use {fix}, or data with the labels this model predicts (--data NAME; "
        "--set task=... only where the data has such labels)."
    )


def build_model(
    cfg: TrainConfig, data: RunData, resumed_meta: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh (or ``init_from``) model for ``data`` and the meta recorded in ``model.json``.

    With ``init_from`` the weights come from an earlier run; a different class count gets a new head
    (``reset_classifier``), and ``freeze="features"`` leaves only the head trainable. The source
    run's normalisation is kept, so the features see images as they did in pre-training.
    ``resumed_meta`` (the ``model.json`` of the run being resumed) replaces the ``init_from`` source:
    the architecture comes from it and the weights from the training state, so the source may be gone.
    """
    in_chans = data.input_size[0]
    # Reconstruction predicts the image itself: one output channel per input channel, whatever the labels.
    num_classes = in_chans if data.task == "reconstruction" else len(data.classes)
    name, kwargs = cfg.model, dict(cfg.model_kwargs)
    mean, std = list(data.mean), list(data.std)
    torch.manual_seed(cfg.seed)  # the weights of a fresh model depend on the seed only
    check_freeze(cfg.freeze, cfg.init_from)
    source_classes, spec, source_sha = None, None, None
    if cfg.init_from:
        from cnnlab.train.checkpoint import build_model_from_meta, load_run, model_label

        if resumed_meta is not None:  # this run's own architecture; restore_state loads its weights
            model, src = build_model_from_meta(resumed_meta), resumed_meta
            source_classes = int(resumed_meta.get("init_from_num_classes", resumed_meta["num_classes"]))
            source_sha = resumed_meta.get("init_from_sha256")
        else:
            source = load_run(cfg.init_from)
            model, src = source.model, source.meta
            source_classes = int(src["num_classes"])
            source_sha = src.get("sha256")  # the verified weights this run starts from (the leaderboard shows it)
            _check_init_from_settings(cfg, dict(src.get("model_kwargs") or {}))
        name, kwargs = model_label(src), dict(src.get("model_kwargs") or {})
        spec = src.get("spec")  # a spec-built source: the spec, not a registered name, fixes the architecture
        if int(src.get("in_chans", in_chans)) != in_chans:
            wanted = int(src.get("in_chans", in_chans))
            if cfg.data.startswith("folder:") and wanted in (1, 3):  # only image folders take grayscale=
                fix = (f"Load the data as {'grayscale' if wanted == 1 else 'RGB'} (--set data_opts='{{\"grayscale\": "
                       f"{str(wanted == 1).lower()}}}').")  # fmt: skip
            else:
                fix = f"Fine-tune it on {wanted}-channel data (--data), or drop --init-from to train a new model."
            raise ValueError(
                f"--init-from {cfg.init_from}: that model takes {wanted}-channel images but {cfg.data!r} has "
                f"{in_chans}-channel images. {fix}"
            )
        if resumed_meta is None and source_classes != num_classes:
            model.reset_classifier(num_classes)  # type: ignore[operator]
        norm = src.get("normalization") or {}
        mean, std = list(norm.get("mean", mean)), list(norm.get("std", std))
    elif is_spec_path(name):
        model, spec = _spec_model(name, kwargs, data, num_classes, resumed_meta)
        name = model.name
    else:
        model = _create(name, kwargs, num_classes, in_chans)
    if cfg.zero_gamma and not cfg.init_from and zero_gamma(model) == 0:
        raise ValueError(
            f"zero_gamma=true, but model {name!r} has no residual block whose last batch norm it can zero "
            "(zero_init_last() or last_bn()); use a residual model (e.g. resnet20, or fastnet with model_kwargs "
            "residual=true), or drop --set zero_gamma."
        )
    geometry = None  # registered models take --set model_kwargs
    if cfg.init_from:
        trained = "x".join(str(v) for v in meta_input) if (meta_input := src.get("input_size")) else "its size"
        geometry = f"fine-tune on images of the size --init-from {cfg.init_from} was trained on ({trained})"
    elif spec is not None:
        geometry = (
            f"give the spec {cfg.model} the geometry the data needs (its `input` and layers, e.g. padding=2 in the "
            "first conv for 28x28 images)"
        )
    out = _output_shape(model, name, cfg.data, data.input_size, geometry)
    _check_output_fits_task(out, data.task, num_classes, data.input_size, name, cfg.data)
    if cfg.whiten:
        _whiten_first_layer(model, name, cfg, data)
    if cfg.freeze == "features":
        freeze_features(model, data.input_size)
    meta = {
        "model": None if spec is not None else name,
        "model_kwargs": kwargs,
        "num_classes": num_classes,
        "in_chans": in_chans,
        "input_size": list(data.input_size),
        "task": data.task,
        "dataset": cfg.data,
        "classes": data.classes,
        "normalization": {"mean": mean, "std": std},
        "init_from": cfg.init_from,
    }
    if spec is not None:
        meta["spec"] = spec
    if source_classes is not None:
        meta["init_from_num_classes"] = source_classes  # != num_classes: the head was replaced
    if source_sha:
        meta["init_from_sha256"] = str(source_sha)
    return model, meta


def _check_init_from_settings(cfg: TrainConfig, source_kwargs: dict[str, Any]) -> None:
    """Settings that shape a fresh model cannot apply to one loaded with ``init_from``: refused, not ignored.

    ``model_kwargs`` equal to the checkpoint's own (``source_kwargs``) describe the model that is loaded.
    """
    if cfg.model_kwargs and cfg.model_kwargs != source_kwargs:
        raise ValueError(
            f"model_kwargs={cfg.model_kwargs} cannot apply with --init-from {cfg.init_from}: the checkpoint's "
            f"weights fix the architecture, built with model_kwargs={source_kwargs}, so these would be recorded but "
            "not built. Drop --set model_kwargs to fine-tune the checkpoint, or drop --init-from to train a new "
            "model with them."
        )
    if cfg.zero_gamma:
        raise ValueError(
            f"zero_gamma=true initialises a fresh model's residual blocks, but --init-from {cfg.init_from} brings "
            "trained weights, which it would overwrite; drop --set zero_gamma (or --init-from)."
        )


def _create(name: str, kwargs: dict[str, Any], num_classes: int, in_chans: int) -> nn.Module:
    """``create_model`` for the data; model_kwargs that the builder does not take are one paragraph.

    >>> _create("fastnet", {"colour": 1}, 10, 1)
    Traceback (most recent call last):
    ValueError: model_kwargs={'colour': 1}: model 'fastnet' cannot be built with them (FastNet.__init__() got ...
    """
    from cnnlab.models import create_model

    fixed = sorted(k for k in ("num_classes", "in_chans") if k in kwargs)
    if fixed:
        raise ValueError(
            f"model_kwargs={kwargs} sets {' and '.join(fixed)}, which cnnlab train takes from the data (here "
            f"num_classes={num_classes}, in_chans={in_chans}); drop {', '.join(fixed)} from --set model_kwargs "
            "(for other images, change --data or its data_opts)."
        )
    try:
        return create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as err:
        raise ValueError(
            f"model_kwargs={kwargs}: model {name!r} cannot be built with them ({err}). Each key must be a keyword "
            f"argument that {name!r} takes (its class in cnnlab.models documents them); fix or drop --set "
            "model_kwargs."
        ) from None


def _spec_model(
    path: str, kwargs: dict[str, Any], data: RunData, num_classes: int, resumed_meta: dict[str, Any] | None
) -> tuple[SpecNet, dict[str, Any]]:
    """The model of the spec file ``path`` (``--model net.yaml``) and its spec, recorded in ``model.json``.

    The spec fixes the architecture; a classifier head (a last ``linear`` layer) is resized to the data's class
    count, as a registered model is built with ``num_classes``. A resumed run is rebuilt from the spec its
    ``model.json`` recorded, so an edited or deleted file does not change it.
    """
    from cnnlab.models.spec import from_spec

    if kwargs:
        raise ValueError(
            f"model_kwargs={kwargs} cannot apply to --model {path}: a spec file fixes the whole architecture, so "
            "it takes no model_kwargs. Edit the spec instead, or drop --set model_kwargs."
        )
    net = from_spec(resumed_meta["spec"] if resumed_meta and resumed_meta.get("spec") else path)
    chans = net.input_size[0]
    if chans != data.input_size[0]:
        c = data.input_size[0]
        opts = f"--set data_opts='{{\"grayscale\": {str(chans == 1).lower()}}}'"
        folder = f" (or, for a folder: dataset, load it with {opts})"
        raise ValueError(
            f"--model {path}: the spec's input has {chans} channel{'s' if chans != 1 else ''}, but the training "
            f"images have {c}. Set the spec's `input` to [{c}, {', '.join(map(str, data.input_size[1:]))}]"
            f"{folder if chans in (1, 3) else ''}."
        )
    if data.task == "classification" and net.has_classifier and tuple(net.output_shape) != (num_classes,):
        net.reset_classifier(num_classes)
    return net, dict(net.spec)


def check_freeze(freeze: str, init_from: str | None) -> None:
    """``freeze="features"`` needs pre-trained features: on a fresh model they would stay random.

    >>> check_freeze("features", None)
    Traceback (most recent call last):
    ValueError: --freeze features trains only the head and keeps the features as they are, but there is ...
    """
    if freeze == "features" and not init_from:
        raise ValueError(
            "--freeze features trains only the head and keeps the features as they are, but there is no "
            "--init-from to bring trained features, so they would stay random (a head on random features learns "
            "little). Add --init-from RUN (a run directory of `cnnlab train`), or drop --freeze to train all layers."
        )


def source_model(init_from: str) -> str:
    """The model the ``init_from`` checkpoint records: its registered name, or a spec-built model's spec name."""
    from cnnlab.train.checkpoint import model_label, read_meta

    return model_label(read_meta(init_from))


def check_model_matches_source(model: str, init_from: str, source: str) -> None:
    """The ``init_from`` checkpoint (of model ``source``) decides the architecture: another ``model`` is refused.

    >>> check_model_matches_source("fastnet", "runs/a", "fastnet")
    >>> check_model_matches_source("resnet20", "runs/a", "fastnet")
    Traceback (most recent call last):
    ValueError: --model resnet20 conflicts with --init-from runs/a, a fastnet checkpoint: its weights fix ...
    """
    if source != model:
        raise ValueError(
            f"--model {model} conflicts with --init-from {init_from}, a {source} checkpoint: its weights fix the "
            f"architecture, so {model} cannot be built from them. Drop --model (or pass --model {source}) to "
            f"fine-tune the {source}, or drop --init-from to train {model} from scratch."
        )
