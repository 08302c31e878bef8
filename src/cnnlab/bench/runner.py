"""``run_bench``: accuracy on the full test split and speed, per backend, for one verified checkpoint.

The order for each backend is fixed: prepare it (export, quantize, compile), score the whole test split
through it (which also warms it up), time ``repeats`` calls at ``batch_size`` (the seed's rule: 4), then
measure throughput and peak memory at ``throughput_batch``. Threads are set once, explicitly, for torch
and for ONNX Runtime.

>>> target = load_target("fastnet")  # doctest: +SKIP
>>> report = run_bench(target, BenchConfig(backends=("eager",), repeats=20))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.bench.backends import DEFAULT_BACKENDS, BackendContext, BackendUnavailable, Prepared, prepare_backend
from cnnlab.bench.compare import CompareResult, interleaved
from cnnlab.bench.fingerprint import Fingerprint, machine_fingerprint, versions
from cnnlab.bench.measure import LatencyStats, MemoryWatch, PeakMemory, throughput, time_calls
from cnnlab.errors import CnnlabError, DataError

__all__ = [
    "BackendResult", "BenchConfig", "BenchReport", "BenchTarget", "data_sha256", "load_target", "run_bench",
    "run_compare",
]  # fmt: skip


@dataclass(frozen=True)
class BenchConfig:
    """How to measure; every field is stored beside the result."""

    backends: tuple[str, ...] = DEFAULT_BACKENDS  # which backends, in this order
    batch_size: int = 4  # latency batch: the seed's leaderboard rule ("measured during validation at batch 4")
    threads: int = 1  # intra-op threads for torch and ONNX Runtime (1: steady numbers on a shared machine)
    repeats: int = 100  # timed latency calls per backend, after warm-up
    warmup: int = 10  # untimed calls before timing (the accuracy pass has warmed the backend too)
    throughput_batch: int = 256  # large batch for images/second and peak memory
    throughput_seconds: float = 1.0  # minimum time spent measuring throughput, seconds
    eval_batch: int = 500  # batch size of the accuracy pass over the test split
    calibration_images: int = 256  # training images that calibrate the int8 ranges
    data_dir: str | None = None  # where the dataset files are (None: cnnlab's usual search)

    def __post_init__(self) -> None:
        for name in ("batch_size", "threads", "repeats", "throughput_batch", "eval_batch", "calibration_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} (BenchConfig.{name}) must be a positive integer; received {value!r}. "
                    f"Use for example --{name.replace('_', '-')} 4."
                )
        for name, example in (("warmup", "10"), ("throughput_seconds", "1.0")):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"--{name.replace('_', '-')} (BenchConfig.{name}) must be >= 0; received {getattr(self, name)!r}. "
                    f"Use for example --{name.replace('_', '-')} {example}."
                )
        cores = os.cpu_count() or 1
        if self.threads > cores:
            raise ValueError(
                f"--threads (BenchConfig.threads) must be at most the {cores} logical cores of this machine; "
                f"received {self.threads}. More threads than cores time the operating system's scheduling, not "
                f"the model (and --record would store that). Use --threads {cores} or fewer (default 1)."
            )


@dataclass
class BenchTarget:
    """A model to benchmark: verified checkpoint (``sha256`` set) or an untrained registered model."""

    model: nn.Module
    name: str
    source: str
    meta: dict[str, Any]
    sha256: str | None = None
    recorded: dict[str, Any] = field(default_factory=dict)  # what `cnnlab train` wrote in metrics.json

    @property
    def input_size(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.meta["input_size"])

    @property
    def dataset(self) -> str | None:
        value = self.meta.get("dataset")
        return None if self.sha256 is None or value is None else str(value)

    @property
    def init_from_sha256(self) -> str | None:
        """sha256 of the weights this checkpoint was fine-tuned from; None when trained from scratch.

        Runs record it in ``model.json``; for a run that records only the ``--init-from`` path, the
        source's own ``model.json`` gives it while the source exists, else it is ``"unknown"``.
        """
        if self.sha256 is None or not self.meta.get("init_from"):
            return None
        if self.meta.get("init_from_sha256"):
            return str(self.meta["init_from_sha256"])
        from cnnlab.errors import CheckpointError
        from cnnlab.train.checkpoint import read_meta

        try:
            return str(read_meta(Path(str(self.meta["init_from"])))["sha256"])
        except (CheckpointError, OSError, ValueError, KeyError):  # the source was moved, deleted or is not a run
            return "unknown"


def names_checkpoint(spec: str) -> bool:
    """Whether TARGET ``spec`` is read as a run directory or weights file (else as a registered model name).

    >>> names_checkpoint("runs/latest"), names_checkpoint("fastnet")
    (True, False)
    """
    return Path(spec).expanduser().exists() or "/" in spec or spec.endswith(".safetensors")


def load_target(spec: str, input_size: tuple[int, ...] | None = None) -> BenchTarget:
    """A run directory or ``.safetensors`` file (verified against its recorded sha256), or a registered name.

    Raises :class:`~cnnlab.errors.CheckpointError` for a tampered, truncated or mismatched checkpoint.
    """
    path = Path(spec).expanduser()
    if names_checkpoint(spec):
        from cnnlab.train.checkpoint import load_run, model_label

        run = load_run(path)  # checks size, sha256 and shapes; raises CheckpointError
        meta = dict(run.meta)
        if input_size is not None:
            meta["input_size"] = list(input_size)
        name = model_label(meta)
        metrics = run.weights_path.parent / "metrics.json"
        recorded: dict[str, Any] = {}
        if metrics.is_file():
            try:
                saved = json.loads(metrics.read_text(encoding="utf-8"))
                keys = ("test_accuracy", "test_mean_iou", "test_mse", "recipe", "epochs", "precision")
                recorded = {k: saved[k] for k in keys if k in saved}
                config = saved.get("config") or {}
                recorded["limit_test"], recorded["tta_flip"] = config.get("limit_test"), config.get("tta_flip")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                recorded = {}  # informative only: the benchmark measures accuracy itself
        return BenchTarget(run.model, name, str(run.weights_path), meta, sha256=str(meta["sha256"]), recorded=recorded)
    from cnnlab.models import create_model, model_info

    try:
        info = model_info(spec)
    except ValueError as err:
        raise ValueError(
            f"TARGET {spec!r} is neither an existing run directory or .safetensors file nor a registered model: "
            f"{err}"
        ) from None
    model = create_model(spec).eval()
    if input_size is not None:
        _check_runs_at(model, spec, input_size, tuple(info.input_size))
    meta = {"model": spec, "input_size": list(input_size or info.input_size), "task": info.task}
    return BenchTarget(model, spec, f"registered model {spec!r} (untrained: speed only)", meta)


def _check_runs_at(model: nn.Module, name: str, size: tuple[int, ...], design: tuple[int, ...]) -> None:
    """One forward pass on zeros at ``--input`` ``size``; a model that cannot take it is a one-paragraph error."""
    from cnnlab.analysis.capture import torch_reason

    try:
        with torch.inference_mode():
            model(torch.zeros(1, *size))
    except Exception as err:  # whatever PyTorch raises, the user gets it as one paragraph
        given, own = ",".join(map(str, size)), ",".join(map(str, design))
        raise ValueError(
            f"--input {given}: model {name!r} cannot run on {'x'.join(map(str, size))} inputs "
            f"({torch_reason(err)}) Its design input size is {own}; pass an --input it accepts, or leave "
            f"--input out to time it at {own}."
        ) from None


@dataclass
class BackendResult:
    """One backend's numbers, or ``status == "skipped"`` with the ``reason``."""

    backend: str
    status: str  # "ok" | "skipped"
    reason: str = ""
    accuracy: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    latency: LatencyStats | None = None
    throughput: float | None = None
    peak_memory: PeakMemory | None = None
    runtime: str = ""
    notes: list[str] = field(default_factory=list)
    prepare_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["latency"] = None if self.latency is None else self.latency.to_dict()
        return out


@dataclass
class BenchReport:
    """Everything one ``cnnlab bench`` measured, with the machine, versions and config beside it."""

    target: str
    model: str
    dataset: str | None
    task: str
    sha256: str | None
    test_images: int
    params: int | None
    macs: int | None
    config: BenchConfig
    fingerprint: Fingerprint
    versions: dict[str, str]
    results: list[BackendResult]
    recorded: dict[str, Any] = field(default_factory=dict)  # metrics.json of the run, for comparison
    input_size: tuple[int, ...] = ()  # (C, H, W) of one image as measured
    data_sha256: str | None = None  # of the test images and targets that gave the accuracy
    init_from_sha256: str | None = None  # the weights a fine-tuned checkpoint started from

    def leaderboard_rows(self) -> list[dict[str, Any]]:
        """One leaderboard row per backend that ran."""
        rows = []
        for r in self.results:
            if r.status != "ok" or r.latency is None:
                continue
            rows.append({
                "model": self.model, "dataset": self.dataset, "task": self.task or None, "backend": r.backend,
                "accuracy": r.accuracy,
                "test_images": self.test_images or None, "data_sha256": self.data_sha256,
                "input_size": "x".join(str(v) for v in self.input_size) or None,
                "latency_median_ms": r.latency.median_ms, "latency_p90_ms": r.latency.p90_ms,
                "latency_n": r.latency.n, "batch_size": self.config.batch_size, "throughput": r.throughput,
                "throughput_batch": self.config.throughput_batch,
                "peak_memory_bytes": None if r.peak_memory is None else r.peak_memory.bytes,
                "threads": self.config.threads, "params": self.params, "macs": self.macs,
                "checkpoint_sha256": self.sha256, "init_from_sha256": self.init_from_sha256, "metrics": r.metrics,
                "cnnlab_version": self.versions.get("cnnlab"), "torch_version": self.versions.get("torch"),
                "runtime_version": r.runtime, "machine": self.fingerprint.machine,
                "cpu_model": self.fingerprint.cpu_model, "cpu_count": self.fingerprint.cpu_count,
                "gpu": self.fingerprint.gpu,
            })  # fmt: skip
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "model": self.model, "dataset": self.dataset, "task": self.task,
            "checkpoint_sha256": self.sha256, "init_from_sha256": self.init_from_sha256,
            "test_images": self.test_images, "data_sha256": self.data_sha256,
            "input_size": list(self.input_size), "params": self.params,
            "macs": self.macs, "config": asdict(self.config), "machine": self.fingerprint.to_dict(),
            "versions": self.versions, "results": [r.to_dict() for r in self.results],
            "recorded_by_train": self.recorded,
        }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# data


@dataclass
class _Data:
    images: torch.Tensor | None  # uint8 (N, C, H, W) test images, None for speed only
    targets: torch.Tensor | None  # labels (N,) or masks (N, H, W)
    classes: list[str]
    calibration: Callable[[], torch.Tensor]
    calibration_note: str
    example: Callable[[int], torch.Tensor]  # preprocessed batch of n images for timing
    sha256: str | None = None  # of the test images and targets that give the accuracy; None for speed only


def _load_data(target: BenchTarget, cfg: BenchConfig) -> _Data:
    from cnnlab.train.checkpoint import preprocess

    size = target.input_size
    if target.dataset is None:  # untrained registered model: random inputs, speed only
        gen = torch.Generator().manual_seed(0)
        random = torch.randn(max(cfg.throughput_batch, cfg.calibration_images), *size, generator=gen)
        return _Data(None, None, [], lambda: random[: cfg.calibration_images],
                     f"{cfg.calibration_images} random normal inputs (no dataset)", lambda n: random[:n])  # fmt: skip
    from cnnlab.data import load_dataset

    # The options the run was trained with (e.g. image size and count of generated shapes) pick the same data.
    train_cfg = target.meta.get("config") or {}
    opts = dict(train_cfg.get("data_opts") or {})
    data_dir = cfg.data_dir or train_cfg.get("data_dir")
    try:
        test = load_dataset(target.dataset, "test", data_dir, **opts)
    except DataError as err:  # the user named a run, not a dataset: say where the dataset's name came from
        raise DataError(
            f"TARGET {target.source}: bench scores a checkpoint on the test split of the dataset it was trained "
            f"on, {target.dataset!r} (recorded in its model.json), and that split cannot be loaded here. {err}"
        ) from None
    if tuple(test.input_size) != size:
        raise ValueError(
            f"the checkpoint's model expects images of size {size} but the {target.dataset!r} test split has "
            f"{tuple(test.input_size)}; the checkpoint's model.json and the dataset disagree. Re-run training."
        )
    targets = test.masks if target.meta.get("task") == "segmentation" else test.labels

    def calibration() -> torch.Tensor:
        train = load_dataset(target.dataset or "", "train", data_dir, **opts)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: cfg.calibration_images]
        return preprocess(train.images[pick], target.meta)

    def example(n: int) -> torch.Tensor:
        reps = -(-n // len(test))  # ceil: repeat the split when n is larger than it
        return preprocess(test.images[:n] if reps == 1 else test.images.repeat(reps, 1, 1, 1)[:n], target.meta)

    note = f"{cfg.calibration_images} random {target.dataset} training images"
    digest = None if targets is None else data_sha256(test.images, targets)
    return _Data(test.images, targets, list(test.classes), calibration, note, example, digest)


def data_sha256(images: torch.Tensor, targets: torch.Tensor) -> str:
    """sha256 of the test images and targets, so a row says which data gave its accuracy (not just a name).

    >>> images = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    >>> a, b = data_sha256(images, torch.tensor([0, 1])), data_sha256(images, torch.tensor([1, 0]))
    >>> len(a), a == data_sha256(images.clone(), torch.tensor([0, 1])), a == b
    (64, True, False)
    """
    digest = hashlib.sha256()
    for t in (images, targets):  # shape and dtype first: the same bytes read another way are other data
        digest.update(f"{tuple(t.shape)} {t.dtype};".encode())
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _score(prepared: Prepared, data: _Data, meta: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    from cnnlab.train import tasks
    from cnnlab.train.checkpoint import preprocess

    if data.images is None or data.targets is None:
        raise RuntimeError("cnnlab bug: the bench data was built without images or targets.")
    task = str(meta.get("task", "classification"))
    stats = tasks.new_stats(task, len(data.classes))
    for lo in range(0, len(data.images), cfg.eval_batch):
        x = preprocess(data.images[lo : lo + cfg.eval_batch], meta)
        out = prepared.predict(x).float()
        tasks.update_stats(stats, task, out, x if task == "reconstruction" else data.targets[lo : lo + cfg.eval_batch])
    summary = tasks.summarize(stats, task, data.classes)
    return {k: v for k, v in summary.items() if k in ("accuracy", "loss", "mean_iou", "pixel_accuracy", "mse")}


def _measure(name: str, model: nn.Module, ctx: BackendContext, data: _Data, target: BenchTarget,
             cfg: BenchConfig) -> BackendResult:  # fmt: skip
    start = time.perf_counter()
    with MemoryWatch() as memory:
        try:
            prepared = prepare_backend(name, model, ctx)
        except BackendUnavailable as err:
            return BackendResult(name, "skipped", reason=str(err))
        result = BackendResult(name, "ok", runtime=prepared.runtime, notes=list(prepared.notes))
        result.prepare_seconds = time.perf_counter() - start
        if data.images is not None:
            result.metrics = _score(prepared, data, target.meta, cfg)
            result.accuracy = result.metrics.get("accuracy")
        small, large = data.example(cfg.batch_size), data.example(cfg.throughput_batch)
        result.latency = time_calls(lambda: prepared.predict(small), repeats=cfg.repeats, warmup=cfg.warmup)
        result.throughput = throughput(lambda: prepared.predict(large), cfg.throughput_batch,
                                       min_seconds=cfg.throughput_seconds)  # fmt: skip
    result.peak_memory = memory.result
    return result


def _analysis(target: BenchTarget) -> tuple[int | None, int | None]:
    from cnnlab.analysis import analyze

    params = sum(p.numel() for p in target.model.parameters())
    try:
        totals = analyze(target.model, target.input_size, lint=False).totals
    except (CnnlabError, ValueError, RuntimeError):
        return params, None  # a model the analysis cannot trace still gets its parameter count
    return totals.params, totals.macs


def run_bench(target: BenchTarget, cfg: BenchConfig | None = None, *,
              log: Callable[[str], None] | None = None) -> BenchReport:  # fmt: skip
    """Measure ``target`` on every backend of ``cfg``; see the module docstring for what is measured."""
    cfg = cfg or BenchConfig()
    torch.set_num_threads(cfg.threads)
    data = _load_data(target, cfg)
    params, macs = _analysis(target)
    results = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp:
        ctx = BackendContext(target.input_size, cfg.threads, Path(tmp), data.calibration, data.calibration_note)
        for name in cfg.backends:
            if log:
                log(f"measuring {name} ...")
            results.append(_measure(name, target.model, ctx, data, target, cfg))
    return BenchReport(
        target=target.source, model=target.name, dataset=target.dataset, task=str(target.meta.get("task", "")),
        sha256=target.sha256, test_images=0 if data.images is None else len(data.images), params=params, macs=macs,
        config=cfg, fingerprint=machine_fingerprint(), versions=versions(), results=results, recorded=target.recorded,
        input_size=target.input_size, data_sha256=data.sha256, init_from_sha256=target.init_from_sha256,
    )  # fmt: skip


def run_compare(a: BenchTarget, b: BenchTarget, backend_a: str, backend_b: str,
                cfg: BenchConfig) -> CompareResult:  # fmt: skip
    """Latency of (``a`` on ``backend_a``) and (``b`` on ``backend_b``) at ``cfg.batch_size``, interleaved."""
    if a.input_size != b.input_size:
        raise ValueError(
            f"--compare needs two models with the same input size; received {a.input_size} for {a.source} and "
            f"{b.input_size} for {b.source}. Compare checkpoints trained on the same dataset."
        )
    torch.set_num_threads(cfg.threads)
    data = _load_data(a, cfg)
    x = data.example(cfg.batch_size)
    with tempfile.TemporaryDirectory(prefix="cnnlab-compare-") as tmp:
        prepared = []
        for i, (target, backend) in enumerate(((a, backend_a), (b, backend_b))):
            work = Path(tmp) / str(i)
            work.mkdir()
            tdata = data if target is a else _load_data(target, cfg)
            ctx = BackendContext(target.input_size, cfg.threads, work, tdata.calibration, tdata.calibration_note)
            prepared.append(prepare_backend(backend, target.model, ctx))  # BackendUnavailable is an error here
        pa, pb = prepared
        label_a = f"{a.name}:{backend_a}" if a is not b else backend_a
        label_b = f"{b.name}:{backend_b}" if a is not b else backend_b
        if label_a == label_b:
            label_a, label_b = f"A ({label_a})", f"B ({label_b})"
        return interleaved(lambda: pa.predict(x), lambda: pb.predict(x), repeats=cfg.repeats, warmup=cfg.warmup,
                           label_a=label_a, label_b=label_b)  # fmt: skip
