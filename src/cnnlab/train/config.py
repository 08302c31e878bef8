"""``TrainConfig``: every training setting in one flat, typed dataclass with commented defaults.

Unknown keys are rejected with the closest valid names; the resolved config is saved as
``config.json`` beside every result and inside ``model.json``. Recipes (:mod:`cnnlab.train.recipes`)
are named sets of overrides of these defaults; ``--set key=value`` overrides single fields.

>>> cfg = TrainConfig.from_dict({"epochs": 2, "lr": 0.05})
>>> cfg.epochs, cfg.optimizer
(2, 'sgd')
>>> cfg.with_overrides(["label_smoothing=0.0"]).label_smoothing
0.0
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("sgd", "adamw", "adadelta")
SCHEDULES = ("cosine", "linear", "onecycle", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TASKS = ("auto", "classification", "segmentation", "reconstruction")
PROGRESS = ("auto", "rich", "plain", "none")
FREEZE = ("none", "features")


@dataclass
class TrainConfig:
    """All settings of one training run (defaults = cnnlab's fast Fashion-MNIST recipe)."""

    # -- what to train on ------------------------------------------------------------------------
    model: str = "fastnet"  # registered model name (see `cnnlab models`)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra builder keywords, e.g. widths
    data: str = "fashion-mnist"  # dataset name (cnnlab.data.load_dataset)
    data_dir: str | None = None  # folder with the dataset files (None: search the usual places)
    data_opts: dict[str, Any] = field(default_factory=dict)  # extra loader options, e.g. {"size": 28}
    task: str = "auto"  # classification | segmentation | reconstruction | auto (from data and model)
    val_fraction: float = 0.1  # share of the training split held out for validation (0..1)
    limit_train: int = 0  # use only the first N training images (0: all); for tests and quick runs
    limit_test: int = 0  # use only the first N test images (0: all)
    # -- schedule ----------------------------------------------------------------------------------
    epochs: int = 8  # passes over the data (default recipe: 93.5-93.7% test; 2 cores: 56 s Zen 5, 66 s AMX, 266 s AVX2)
    batch_size: int = 256  # images per optimizer step (global, over all processes)
    optimizer: str = "sgd"  # sgd | adamw | adadelta
    lr: float = 0.2  # peak learning rate at batch 256 (scaled by batch_size/256 when scale_lr)
    scale_lr: bool = True  # linear scaling rule (Goyal et al. 2017): lr * batch_size / 256
    momentum: float = 0.9  # SGD momentum (unitless); AdamW beta1
    nesterov: bool = True  # Nesterov momentum for SGD
    weight_decay: float = 5e-4  # L2 penalty per step (decoupled for AdamW)
    no_decay_bias_norm: bool = True  # no weight decay on biases and normalisation parameters
    schedule: str = "onecycle"  # cosine | linear | onecycle | step | constant (per optimizer step)
    warmup_epochs: float = 0.3  # linear warm-up length in epochs (cosine/linear/constant)
    step_epochs: int = 1  # step decay: multiply lr by step_gamma every step_epochs epochs
    step_gamma: float = 0.7  # step decay factor per step_epochs (PyTorch MNIST example: 0.7)
    grad_clip: float = 0.0  # clip the global gradient L2 norm to this value (0: off)
    # -- Bag-of-Tricks -----------------------------------------------------------------------------
    label_smoothing: float = 0.1  # share of probability spread over all classes (0: off)
    mixup_alpha: float = 0.0  # mixup Beta(alpha, alpha) parameter (0: off)
    ema_decay: float = 0.0  # per-step EMA of the weights, with warm-up (tricks.make_ema; 0: off), e.g. 0.99
    whiten: bool = False  # first layer = patch-whitening filters of the training images, frozen (init_whitening)
    zero_gamma: bool = False  # zero the last BN gamma of each residual block (models with zero_init_last)
    tta_flip: bool = False  # evaluate on the image and its mirror, averaging the logits
    flip: bool = False  # random horizontal flips in training (probability 0.5)
    translate: int = 1  # random translation in pixels (0: off), zero-filled (1 beat 2 and 0 on val at 8 epochs)
    # -- numerics and hardware ---------------------------------------------------------------------
    precision: str = "auto"  # auto | fp32 | bf16 (autocast) | fp16 (CUDA, with a grad scaler)
    channels_last: bool = True  # NHWC memory format (faster convolutions on CPU and tensor cores)
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads (0: torch's default)
    seed: int = 0  # seeds weights, split, shuffling and augmentation
    deterministic: bool = False  # deterministic algorithms (bit-exact resume needs one thread too)
    eval_batch_size: int = 1024  # images per forward pass in evaluation
    # -- transfer learning -------------------------------------------------------------------------
    init_from: str | None = None  # run directory or .safetensors to start from
    freeze: str = "none"  # none | features (train only the head)
    # -- output ------------------------------------------------------------------------------------
    progress: str = "auto"  # auto | rich | plain | none (auto: rich on a terminal, plain under CI)
    recipe: str = "default"  # the recipe these settings came from (recorded, not applied here)

    def __post_init__(self) -> None:
        self.validate()

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a mapping; unknown keys raise ``ValueError`` naming the closest fields."""
        check_keys(values, "TrainConfig")
        return cls(**{k: _coerce(k, v) for k, v in values.items()})

    def with_overrides(self, overrides: Mapping[str, Any] | Iterable[str]) -> TrainConfig:
        """A copy with fields replaced; ``overrides`` is a mapping or ``["key=value", ...]`` strings."""
        pairs = dict(overrides) if isinstance(overrides, Mapping) else parse_assignments(overrides)
        check_keys(pairs, "--set")
        merged = {**self.to_dict(), **{k: _coerce(k, v) for k, v in pairs.items()}}
        return TrainConfig(**merged)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[no-any-return]

    # -- validation --------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``ValueError`` for out-of-range values (one paragraph naming the field)."""
        choices = {
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "precision": PRECISIONS,
            "task": TASKS,
            "progress": PROGRESS,
            "freeze": FREEZE,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(
                    f"TrainConfig.{name} must be one of {', '.join(allowed)}; received {name}={value!r}."
                )
        for name in _FLOAT_FIELDS:  # nan passes every range check below (each comparison is False)
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(
                    f"TrainConfig.{name} must be a finite number; received {name}={value!r}. Give a plain number, "
                    f"e.g. --set {name}={_FIELDS[name].default}."
                )
        if not _DEVICE.fullmatch(self.device):
            raise ValueError(
                f"TrainConfig.device must be auto, cpu, cuda or cuda:N (a GPU index); received device={self.device!r}."
            )
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
                    "step_epochs": self.step_epochs}  # fmt: skip
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1; received {name}={value}.")
        ranges = {
            "label_smoothing": (self.label_smoothing, 0.0, 1.0),
            "ema_decay": (self.ema_decay, 0.0, 1.0),
            "momentum": (self.momentum, 0.0, 1.0),  # SGD momentum or AdamW beta1: 1 or more never forgets
        }
        if not 0 < self.val_fraction < 1:
            raise ValueError(
                f"TrainConfig.val_fraction must lie in (0, 1): validation data comes from the training split "
                f"(the test split is only for the final number); received val_fraction={self.val_fraction}. "
                "Use e.g. 0.1."
            )
        for name, (value, low, high) in ranges.items():
            if not low <= value < high:
                raise ValueError(
                    f"TrainConfig.{name} must lie in [{low}, {high}); received {name}={value}."
                )
        nonnegative = ("lr", "weight_decay", "grad_clip", "mixup_alpha", "warmup_epochs", "limit_train", "limit_test",
                       "translate", "threads")  # fmt: skip
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0; received {name}={getattr(self, name)}.")
        if self.lr == 0:
            raise ValueError("TrainConfig.lr must be > 0; received lr=0. Try lr=0.1 for SGD or 1e-3 for AdamW.")
        if self.step_gamma <= 0:
            raise ValueError(
                f"TrainConfig.step_gamma must be > 0: the step schedule multiplies the learning rate by it every "
                f"step_epochs epochs; received step_gamma={self.step_gamma}. Use e.g. 0.7 (PyTorch's MNIST example)."
            )


def absolute_paths(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the paths in ``data`` (``folder:``), ``data_dir``, ``init_from`` and a spec-file ``model``
    made absolute.

    A run records them so that bench, report, viz and ``--resume`` find the data from any working directory.

    >>> absolute_paths({"data": "folder:/pics/../imgs", "init_from": None})
    {'data': 'folder:/imgs', 'init_from': None}
    """
    out = dict(values)
    for key in ("data_dir", "init_from"):
        if out.get(key):
            out[key] = str(Path(out[key]).expanduser().resolve())
    model = out.get("model")
    if isinstance(model, str):
        from cnnlab.models.spec import is_spec_path

        if is_spec_path(model):
            out["model"] = str(Path(model).expanduser().resolve())
    data = out.get("data")
    if isinstance(data, str):
        for prefix in ("folder:", "rot-folder:"):
            if data.startswith(prefix) and data[len(prefix) :].strip():
                out["data"] = prefix + str(Path(data[len(prefix) :]).expanduser().resolve())
    return out


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """:func:`absolute_paths` applied to a config."""
    keys = ("data", "data_dir", "init_from", "model")
    changed = {k: v for k, v in absolute_paths(cfg.to_dict()).items() if k in keys}
    return dataclasses.replace(cfg, **changed)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)
_FLOAT_FIELDS = tuple(name for name, hint in _HINTS.items() if hint is float)
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_keys(values: Iterable[str], where: str) -> None:
    """Raise ``ValueError`` for keys that are not TrainConfig fields, suggesting the closest ones."""
    for key in values:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, list(_FIELDS), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{where}: unknown training setting {key!r}.{hint} Valid settings are the TrainConfig "
                f"fields: {', '.join(_FIELDS)}."
            )


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a missing ``=`` raises ``ValueError``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"--set expects key=value (for example --set lr=0.05); received {item!r}."
            )
        out[key.strip()] = value.strip()
    return out


def _coerce(key: str, value: Any) -> Any:
    """Turn a ``--set`` string into the field's type (bool/int/float/str/None/dict via JSON)."""
    if not isinstance(value, str):
        return value
    hint = _HINTS[key]
    args = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
    if value.lower() in ("none", "null") and type(None) in args:
        return None
    try:
        if bool in args:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if int in args:
            return int(value)
        if float in args:
            return float(value)
        if typing.get_origin(hint) is dict or hint is dict:
            parsed = json.loads(value)
            if not isinstance(parsed, dict):
                raise ValueError(value)
            return parsed
    except (ValueError, json.JSONDecodeError):
        raise ValueError(
            f"--set {key}: expected a value of type {hint}; received {value!r}."
            + (
                ' Write dicts as JSON, e.g. --set model_kwargs=\'{"widths": [8, 8, 16, 16]}\'.'
                if "dict" in str(hint)
                else ""
            )
        ) from None
    return value
