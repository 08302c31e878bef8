"""Checkpoints that never unpickle code and survive a kill at any moment.

A run directory holds the *model* as ``model.safetensors`` plus ``model.json`` beside it (model name
and kwargs, classes, input size, normalisation, the resolved config and the sha256 of the weights),
and the *training state* (optimizer, EMA, RNG states, epoch, step, history) as one
``train_state.safetensors`` whose header carries the non-tensor part as JSON. Every file is written
to a temporary file in the same folder, fsynced, then renamed over the old one, so a reader sees the
old file or the new one, never half of one.

>>> import torch.nn as nn, tempfile
>>> run = tempfile.mkdtemp()
>>> meta = {"model": "fastnet", "model_kwargs": {}, "num_classes": 10, "in_chans": 1,
...         "input_size": [1, 28, 28], "normalization": {"mean": [0.286], "std": [0.353]}}
>>> from cnnlab.models import create_model
>>> _ = save_model(create_model("fastnet"), meta, run)
>>> load_run(run).meta["model"]
'fastnet'
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from cnnlab.errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
STATE_NAME = "train_state.safetensors"
FORMAT = "cnnlab-checkpoint"
FORMAT_VERSION = 1

__all__ = [
    "META_NAME",
    "STATE_NAME",
    "WEIGHTS_NAME",
    "LoadedRun",
    "atomic_write_bytes",
    "atomic_write_json",
    "build_model_from_meta",
    "load_run",
    "load_train_state",
    "model_label",
    "preprocess",
    "read_meta",
    "read_train_state_info",
    "save_model",
    "save_train_state",
    "sha256_file",
]


# --------------------------------------------------------------------------------------------------
# atomic files


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers only ever see the old or the complete new file.

    The bytes go to a temporary file in the same folder (same filesystem, so the rename is atomic),
    are fsynced, then ``os.replace`` puts them under the real name; the folder is fsynced too so the
    rename itself survives a power cut.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x.bin"
    >>> atomic_write_bytes(p, b"abc").read_bytes()
    b'abc'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """:func:`atomic_write_bytes` of ``obj`` as indented JSON (UTF-8, trailing newline)."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensors_for_saving(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no storage (tied weights are saved twice).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


# --------------------------------------------------------------------------------------------------
# model weights + model.json (contract 6)


@dataclass
class LoadedRun:
    """A model restored from a run: ``model`` (eval mode, CPU), its ``meta`` and the weights file."""

    model: nn.Module
    meta: dict[str, Any]
    weights_path: Path


def save_model(model: nn.Module, meta: Mapping[str, Any], run_dir: str | os.PathLike[str]) -> Path:
    """Write ``run_dir/model.safetensors`` and ``run_dir/model.json`` atomically; returns the weights path.

    ``meta`` needs ``model`` (a registered name) or ``spec`` (a network spec dict), plus
    ``model_kwargs``, ``num_classes``, ``in_chans``, ``input_size`` and ``normalization``
    (``{"mean": [...], "std": [...]}`` per channel, on the 0..1 scale); cnnlab adds ``format``,
    ``sha256`` and ``bytes`` of the weights file. The weights are written first, the JSON second.

    >>> import tempfile, torch.nn as nn
    >>> p = save_model(nn.Linear(2, 2), {"model": "x", "num_classes": 2}, tempfile.mkdtemp())
    >>> p.name
    'model.safetensors'
    """
    missing = [k for k in ("num_classes",) if k not in meta]
    if "model" not in meta and "spec" not in meta:
        missing.append("model (or spec)")
    if missing:
        raise ValueError(
            f"save_model: meta must name the model and its class count; missing keys {missing} in "
            f"meta with keys {sorted(meta)}. Pass e.g. {{'model': 'fastnet', 'num_classes': 10}}."
        )
    run = Path(run_dir)
    data = st_save_bytes(_tensors_for_saving(model.state_dict()), metadata={"format": FORMAT})
    weights = atomic_write_bytes(run / WEIGHTS_NAME, data)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **dict(meta)}
    full["sha256"] = hashlib.sha256(data).hexdigest()
    full["bytes"] = len(data)
    atomic_write_json(run / META_NAME, full)
    return weights


# Other files of a run directory, which people pass by mistake where the checkpoint belongs.
_RUN_FILE_ROLES = {
    STATE_NAME: "the training state of a run (optimizer moments, RNG states, epoch), which --resume reads",
    META_NAME: f"the metadata that goes with {WEIGHTS_NAME}",
    "config.json": "the settings of a run",
    "metrics.json": "the final metrics of a run",
    "metrics.jsonl": "the per-epoch history of a run",
    "report.html": "the HTML report of a run",
}


def _check_is_model_file(p: Path) -> None:
    """Refuse an existing file that is not a model checkpoint (a run's other files, a text file, an image).

    >>> _check_is_model_file(Path("runs/a/train_state.safetensors"))
    Traceback (most recent call last):
    cnnlab.errors.CheckpointError: 'runs/a/train_state.safetensors' is not a model checkpoint: it is the training ...
    """
    role = _RUN_FILE_ROLES.get(p.name)
    if role is None and p.suffix.lower() == ".safetensors":
        return
    if role is not None:
        what, fix = role, f"its run directory {str(p.parent)!r} or {str(p.parent / WEIGHTS_NAME)!r}"
    else:
        what, fix = f"a {p.suffix or 'suffix-less'} file", f"a run directory or the {WEIGHTS_NAME} inside one"
    raise CheckpointError(
        f"{str(p)!r} is not a model checkpoint: it is {what}. A checkpoint is the {WEIGHTS_NAME} that "
        f"`cnnlab train` writes into a run directory, with {META_NAME} beside it; pass {fix}."
    )


def unfinished_run_message(run_dir: Path) -> str:
    """What to say about a run directory with a training state but no model yet (stopped in epoch 1)."""
    return (
        f"{str(run_dir)!r} holds a run that stopped before its first epoch ended: it has {STATE_NAME} (the "
        f"training state) but no {WEIGHTS_NAME} yet, which is written at the end of each epoch. Finish it "
        f"with `cnnlab train --resume --out {run_dir}`, then pass the run again."
    )


def _resolve_weights(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        _check_is_model_file(p)
    weights = p / WEIGHTS_NAME if p.is_dir() else p
    if not weights.is_file():
        if p.is_dir() and (p / STATE_NAME).is_file():
            raise CheckpointError(unfinished_run_message(p))
        if p.is_dir():
            where = f"run directory {str(p)!r} has no {WEIGHTS_NAME}"
        else:
            where = f"{str(p)!r} does not exist"
        raise CheckpointError(
            f"checkpoint not found: {where}. Pass a run directory written by `cnnlab train` (it holds "
            f"{WEIGHTS_NAME} and {META_NAME}) or the path of a .safetensors file."
        )
    return weights


def _read_meta(weights: Path) -> dict[str, Any]:
    meta_path = weights.with_suffix(".json")
    if not meta_path.is_file():
        raise CheckpointError(
            f"checkpoint {str(weights)!r} has no {meta_path.name} beside it; cnnlab needs that file to "
            "know which model to build and how to normalise images. Copy it along with the weights."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r} is not valid JSON ({err}); the file is damaged. "
            "Re-run training or restore the file from a copy."
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r} must hold a JSON object; got {type(meta).__name__}."
        )
    return meta


def _check_integrity(weights: Path, meta: Mapping[str, Any]) -> None:
    size = weights.stat().st_size
    expected_size = meta.get("bytes")
    if isinstance(expected_size, int) and size < expected_size:
        raise CheckpointError(
            f"checkpoint {str(weights)!r} is truncated: {size} bytes on disk, {expected_size} bytes "
            f"recorded in {META_NAME}. The copy was interrupted; copy the file again or re-run training."
        )
    expected = meta.get("sha256")
    if expected is None:
        raise CheckpointError(
            f"{META_NAME} beside {str(weights)!r} records no sha256, so the weights cannot be verified; "
            "write checkpoints with cnnlab.train.checkpoint.save_model."
        )
    actual = sha256_file(weights)
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {str(weights)!r} does not match its {META_NAME}: sha256 {actual[:16]}... on disk, "
            f"{str(expected)[:16]}... recorded. The file was modified or replaced after training, or the "
            "run was killed between writing the two files; restore the original file, or rewrite both with "
            f"`cnnlab train --resume --out {weights.parent}` (it continues from the saved training state)."
        )


def model_label(meta: Mapping[str, Any]) -> str:
    """The model's name for people: the registered name, else the spec's name (spec-built models).

    >>> model_label({"model": "fastnet"}), model_label({"model": None, "spec": {"name": "tiny"}})
    ('fastnet', 'tiny')
    """
    if meta.get("model"):
        return str(meta["model"])
    spec = meta.get("spec")
    return str(spec.get("name") or "spec") if isinstance(spec, Mapping) else "spec"


def build_model_from_meta(meta: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised model of the architecture that ``meta`` describes (CPU, float32)."""
    kwargs = dict(meta.get("model_kwargs") or {})
    kwargs.setdefault("num_classes", int(meta["num_classes"]))
    if "in_chans" in meta:
        kwargs.setdefault("in_chans", int(meta["in_chans"]))
    try:
        if meta.get("spec") is not None:
            # The declarative spec builder (cnnlab.models.spec) is looked up only when needed. The spec fixes
            # the architecture; a recorded class count that differs from its head means a replaced head.
            spec_module = importlib.import_module("cnnlab.models.spec")
            net = spec_module.from_spec(meta["spec"])
            if net.has_classifier and tuple(net.output_shape) != (kwargs["num_classes"],):
                net.reset_classifier(kwargs["num_classes"])
            model: nn.Module = net
            return model
        from cnnlab.models import create_model

        return create_model(str(meta["model"]), **kwargs)
    except (ImportError, AttributeError, TypeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"cannot rebuild the model recorded in {META_NAME} (model={meta.get('model')!r}, "
            f"kwargs={kwargs}): {err}. The checkpoint was written by another cnnlab version or for a "
            "model that is not registered here."
        ) from None


def _load_tensors(weights: Path) -> dict[str, torch.Tensor]:
    try:
        return st_load_bytes(weights.read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(
            f"checkpoint {str(weights)!r} is not a readable safetensors file ({err}); it is truncated or "
            "damaged. Re-run training or restore the file from a copy."
        ) from None


def load_state_dict_checked(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(tensors)`` with shape and key mismatches reported as one CheckpointError."""
    own = model.state_dict()
    problems = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in tensors.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if problems or missing or unexpected:
        parts = []
        if problems:
            parts.append(f"shape mismatch in {len(problems)} tensors ({'; '.join(problems[:4])})")
        if missing:
            parts.append(f"missing {len(missing)} tensors ({', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors ({', '.join(unexpected[:4])})")
        raise CheckpointError(
            f"checkpoint {source} does not fit the model {type(model).__name__}: {'; '.join(parts)}. "
            "The weights belong to another architecture or class count; check --model, num_classes "
            "and in_chans, or use --init-from with a new head for a different class count."
        )
    model.load_state_dict(dict(tensors))


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``model.json`` of a run directory (or of a ``.safetensors`` path), without loading the weights."""
    return _read_meta(_resolve_weights(path))


def load_run(path: str | os.PathLike[str]) -> LoadedRun:
    """Rebuild the model of a run directory (or a ``.safetensors`` path) and load its verified weights.

    Raises :class:`~cnnlab.errors.CheckpointError` when a file is missing, truncated, modified since
    training (sha256 mismatch) or does not fit the architecture recorded in ``model.json``.

    >>> run = load_run("runs/latest")  # doctest: +SKIP
    >>> run.model(preprocess(images, run.meta)).argmax(1)  # doctest: +SKIP
    """
    weights = _resolve_weights(path)
    meta = _read_meta(weights)
    _check_integrity(weights, meta)
    tensors = _load_tensors(weights)
    if "num_classes" not in meta or ("model" not in meta and "spec" not in meta):
        raise CheckpointError(
            f"{META_NAME} beside {str(weights)!r} must record 'model' (or 'spec') and 'num_classes'; "
            f"it has keys {sorted(meta)}."
        )
    model = build_model_from_meta(meta)
    load_state_dict_checked(model, tensors, repr(str(weights)))
    model.eval()
    return LoadedRun(model=model, meta=meta, weights_path=weights)


def preprocess(images: torch.Tensor, meta: Mapping[str, Any]) -> torch.Tensor:
    """Images as the model saw them in training: ``(x / 255 - mean) / std`` per channel, float32.

    ``images`` is ``uint8 (N, C, H, W)`` or ``(C, H, W)`` (0..255); a float tensor is taken to be on
    the 0..1 scale already. ``meta["normalization"]`` holds per-channel ``mean`` and ``std``.

    >>> meta = {"in_chans": 1, "normalization": {"mean": [0.5], "std": [0.25]}}
    >>> preprocess(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), meta)[0, 0, 0, 0].item()
    2.0
    """
    x = images.unsqueeze(0) if images.ndim == 3 else images
    if x.ndim != 4:
        raise ValueError(
            f"preprocess: images must have shape (N, C, H, W) or (C, H, W); received shape "
            f"{tuple(images.shape)}. Add the channel axis with x.unsqueeze(1) for grayscale (N, H, W)."
        )
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    norm = meta.get("normalization") or {}
    mean = torch.tensor(norm.get("mean", [0.0] * x.shape[1]), dtype=torch.float32)
    std = torch.tensor(norm.get("std", [1.0] * x.shape[1]), dtype=torch.float32)
    if mean.numel() != x.shape[1] or std.numel() != x.shape[1]:
        raise ValueError(
            f"preprocess: the model was trained on {mean.numel()}-channel images but received "
            f"{x.shape[1]} channels (shape {tuple(x.shape)}). Convert the images to "
            f"{'grayscale' if mean.numel() == 1 else 'RGB'} first."
        )
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


# --------------------------------------------------------------------------------------------------
# training state (resume)


def save_train_state(
    path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any]
) -> Path:
    """Write the training state as one safetensors file: ``tensors`` plus ``info`` (JSON) in its header.

    One file keeps the state consistent: a kill can never leave new optimizer moments beside old
    weights. ``info`` must be JSON-serialisable.
    """
    data = st_save_bytes(_tensors_for_saving(tensors), metadata={"format": FORMAT, "info": json.dumps(info)})
    return atomic_write_bytes(path, data)


def _state_missing(p: Path) -> CheckpointError:
    return CheckpointError(
        f"cannot resume: {str(p)!r} does not exist. --resume needs the run directory of an earlier "
        f"run (it holds {STATE_NAME}); start without --resume to train from scratch."
    )


def _state_damaged(p: Path, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"training state {str(p)!r} is damaged ({err}); it cannot be resumed. Start the run again "
        "without --resume, or from its model.safetensors with --init-from."
    )


def _info_from_header(data: bytes) -> dict[str, Any]:
    # safetensors layout: 8-byte little-endian header length, then the JSON header.
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    info: dict[str, Any] = json.loads(header["__metadata__"]["info"])
    return info


def read_train_state_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON part of a training state file (epoch, step, history, config), without reading the tensors."""
    p = Path(path)
    if not p.is_file():
        raise _state_missing(p)
    try:
        with open(p, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if header_len > 100_000_000:  # not a safetensors header: a damaged or foreign file
                raise ValueError(f"header length {header_len}")
            return _info_from_header(header_len.to_bytes(8, "little") + f.read(header_len))
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise _state_damaged(p, err) from None


def load_train_state(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_train_state`: ``(tensors, info)``, never unpickling."""
    p = Path(path)
    if not p.is_file():
        raise _state_missing(p)
    data = p.read_bytes()
    try:
        tensors = st_load_bytes(data)
        info = _info_from_header(data)
    except (SafetensorError, ValueError, KeyError, TypeError, OSError) as err:
        raise _state_damaged(p, err) from None
    return tensors, info
