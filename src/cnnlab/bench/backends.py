"""Inference backends: one trained ``nn.Module`` made into a ``predict(x) -> logits`` function per backend.

- ``eager``: PyTorch fp32, ``torch.inference_mode``, NCHW;
- ``channels_last``: the same in the NHWC memory format (oneDNN's preferred layout);
- ``bf16``: channels_last under ``torch.autocast(bfloat16)``, only where the CPU computes bf16 natively
  (``avx512_bf16`` / ``amx_bf16``); elsewhere it is skipped with the reason;
- ``compile``: ``torch.compile`` (Inductor), compiled on the first call;
- ``ort``: ONNX Runtime fp32 on a ``torch.onnx`` export with a dynamic batch axis, all graph optimisations;
- ``ort-int8``: ONNX Runtime on the same export statically quantized (QDQ, int8 per-channel weights, uint8
  activations) with ranges calibrated on training images.

A backend that cannot run this model raises :class:`BackendUnavailable` with a reason in words; the
benchmark reports it as skipped and carries on with the others.

>>> parse_backends("eager, ort")
['eager', 'ort']
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from cnnlab.bench.fingerprint import native_bf16
from cnnlab.errors import CnnlabError

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKENDS",
    "BackendContext",
    "BackendUnavailable",
    "Prepared",
    "export_onnx",
    "parse_backends",
    "prepare_backend",
]

BACKENDS = ("eager", "channels_last", "bf16", "compile", "ort", "ort-int8")
DEFAULT_BACKENDS = ("eager", "ort")
_ONNX_INPUT, _ONNX_OUTPUT = "images", "logits"


class BackendUnavailable(CnnlabError):
    """This backend cannot run this model here; the message says why and what would fix it."""


@dataclass
class BackendContext:
    """What the backends need besides the model: input size, threads, a scratch folder, calibration images."""

    input_size: tuple[int, ...]  # (C, H, W) of one image
    threads: int
    workdir: Path
    calibration: Callable[[], torch.Tensor] | None = None  # preprocessed float (N, C, H, W) for int8
    calibration_note: str = ""
    cpu_flags: frozenset[str] | None = None  # None: this CPU's flags (tests pass their own)
    _onnx: Path | BackendUnavailable | None = field(default=None, repr=False)  # fp32 export (or its failure)


@dataclass
class Prepared:
    """A backend ready to run: ``predict`` maps a preprocessed float NCHW batch to float32 logits."""

    backend: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    runtime: str  # e.g. "torch 2.13.0" or "onnxruntime 1.32.0"
    notes: list[str] = field(default_factory=list)


def parse_backends(text: str) -> list[str]:
    """``"eager,ort"`` -> ``['eager', 'ort']``; ``"all"`` -> every backend; unknown names raise ValueError."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(BACKENDS)
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise ValueError(
            f"--backend must be a comma-separated list of {', '.join(BACKENDS)} (or 'all'); received "
            f"{text!r}{f' with unknown {unknown}' if unknown else ''}. Use for example --backend eager,ort."
        )
    return list(dict.fromkeys(names))  # drop duplicates, keep the order


def prepare_backend(name: str, model: nn.Module, ctx: BackendContext) -> Prepared:
    """Turn ``model`` (eval mode, CPU, fp32) into the ``name`` backend; the model itself is not modified."""
    builders: dict[str, Callable[[nn.Module, BackendContext], Prepared]] = {
        "eager": _eager,
        "channels_last": _channels_last,
        "bf16": _bf16,
        "compile": _compile,
        "ort": _ort_fp32,
        "ort-int8": _ort_int8,
    }
    if name not in builders:
        parse_backends(name)  # raises the readable error
    return builders[name](model, ctx)


# --------------------------------------------------------------------------------------------------
# PyTorch backends


def _torch_runtime() -> str:
    return f"torch {torch.__version__}"


def _eager(model: nn.Module, ctx: BackendContext) -> Prepared:
    net = copy.deepcopy(model).eval()

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = net(x)
        return out

    return Prepared("eager", predict, _torch_runtime())


def _channels_last(model: nn.Module, ctx: BackendContext) -> Prepared:
    net = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = net(x.contiguous(memory_format=torch.channels_last))
        return out

    return Prepared("channels_last", predict, _torch_runtime())


def _bf16(model: nn.Module, ctx: BackendContext) -> Prepared:
    ok, reason = native_bf16(ctx.cpu_flags)
    if not ok:
        raise BackendUnavailable(f"backend bf16 skipped: {reason}. The fp32 backends are measured instead.")
    net = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out: torch.Tensor = net(x.contiguous(memory_format=torch.channels_last))
        return out.float()

    return Prepared("bf16", predict, _torch_runtime(), [f"bf16 autocast, channels_last ({reason})"])


def _compile(model: nn.Module, ctx: BackendContext) -> Prepared:
    net = copy.deepcopy(model).eval()
    compiled = torch.compile(net)

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = compiled(x)
        return out

    try:  # torch.compile compiles lazily: make the first call here so a failure is reported as a skip
        predict(torch.zeros(2, *ctx.input_size))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BackendUnavailable(
            f"backend compile skipped: torch.compile failed on this model ({type(err).__name__}: {first}). "
            "Inductor needs a working C++ compiler on CPU; the other backends still run."
        ) from None
    return Prepared("compile", predict, _torch_runtime(), ["torch.compile (Inductor), default mode"])


# --------------------------------------------------------------------------------------------------
# ONNX export and ONNX Runtime


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's and the quantizer's progress lines and warnings (their errors still propagate)."""
    # "" is the root logger: onnxruntime's quantizer warns there ("Axis 1 is out-of-range for weight ...").
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "torch._dynamo", "")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.:]+)', overload='(\w+)'\)"),  # dynamo exporter: No ONNX function found
    re.compile(r"target=torch\.ops\.([\w.]+)\]"),
    re.compile(r"(\w+::\w+)"),  # TorchScript-style "aten::foo" / "prim::PythonOp"
)


def unsupported_operator(message: str) -> str | None:
    """The operator an exporter error is about, e.g. ``'mylib.op.default'``, when the message names one.

    >>> unsupported_operator("No ONNX function found for <OpOverload(op='mylib.weird', overload='default')>.")
    'mylib.weird.default'
    """
    for pattern in _OP_PATTERNS:
        match = pattern.search(message)
        if match:
            return ".".join(g for g in match.groups() if g)
    return None


def export_onnx(model: nn.Module, input_size: tuple[int, ...], path: Path) -> Path:
    """Export ``model`` with ``torch.onnx`` (dynamo exporter) to ``path``, the batch axis dynamic.

    Raises :class:`BackendUnavailable` naming the operator the exporter cannot translate.
    """
    net = copy.deepcopy(model).eval()
    example = torch.zeros(2, *input_size)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                net,
                (example,),
                dynamo=True,
                input_names=[_ONNX_INPUT],
                output_names=[_ONNX_OUTPUT],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
            if program is None:  # pragma: no cover - dynamo=True always returns the program
                raise RuntimeError("torch.onnx.export returned no program")
            program.save(str(path))
    except BackendUnavailable:
        raise
    except Exception as err:
        text = str(err)
        op = unsupported_operator(text)
        summary = next((ln.strip() for ln in text.splitlines() if "No ONNX function" in ln or "Unsupported" in ln), "")
        summary = summary or (text.strip().splitlines()[0] if text.strip() else type(err).__name__)
        what = f"the operator {op}" if op else "this model"
        raise BackendUnavailable(
            f"ONNX export failed: torch.onnx cannot export {what} ({type(err).__name__}: {summary[:300]}). "
            "The ONNX Runtime backends are skipped and the PyTorch backends still run; to use ONNX Runtime, "
            "replace that operator with standard torch operations or register an ONNX translation for it "
            "(torch.onnx.export(..., custom_translation_table=...))."
        ) from None
    return path


def _onnx_path(model: nn.Module, ctx: BackendContext) -> Path:
    # ort and ort-int8 share one export; a failed export is remembered so it is tried (and reported) once.
    if ctx._onnx is None:
        try:
            ctx._onnx = export_onnx(model, ctx.input_size, ctx.workdir / "model.onnx")
        except BackendUnavailable as err:
            ctx._onnx = err
    if isinstance(ctx._onnx, BackendUnavailable):
        raise BackendUnavailable(str(ctx._onnx))
    return ctx._onnx


def _session(path: Path, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def predict(x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) float32 -> numpy without a copy when contiguous; logits back as a torch tensor.
        out = session.run(None, {input_name: x.detach().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    return predict


def _ort_version() -> str:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable(
            "ONNX Runtime backends skipped: onnxruntime is not installed. Install the extra with "
            "`pip install 'cnnlab[onnx]'` (onnx, onnxruntime, onnxscript)."
        ) from None
    return f"onnxruntime {ort.__version__}"


def _ort_fp32(model: nn.Module, ctx: BackendContext) -> Prepared:
    runtime = _ort_version()
    path = _onnx_path(model, ctx)
    return Prepared("ort", _session(path, ctx.threads), runtime, ["torch.onnx dynamo export, ORT_ENABLE_ALL"])


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a tensor of preprocessed images, 32 at a time."""

    def __init__(self, images: torch.Tensor, name: str) -> None:
        self._batches = iter(torch.split(images, 32))
        self._name = name

    def get_next(self) -> dict[str, object] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch.float().contiguous().numpy()}


def _ort_int8(model: nn.Module, ctx: BackendContext) -> Prepared:
    runtime = _ort_version()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = _onnx_path(model, ctx)
    if ctx.calibration is None:
        raise BackendUnavailable("backend ort-int8 skipped: no calibration images were given.")
    images = ctx.calibration()
    pre = ctx.workdir / "model.pre.onnx"
    int8 = ctx.workdir / "model.int8.onnx"
    try:
        with _quiet_exporter():
            # Shape inference and constant folding first (onnxruntime's recommended pre-processing); the
            # symbolic pass is skipped because it cannot read the exporter's symbolic batch dimension.
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(int8),
                _Calibration(images, _ONNX_INPUT),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    except Exception as err:
        raise BackendUnavailable(
            f"backend ort-int8 skipped: onnxruntime static quantization failed ({type(err).__name__}: "
            f"{str(err).strip()[:300]}). The fp32 backends still run."
        ) from None
    notes = [f"static int8 (QDQ, per-channel weights, MinMax) calibrated on {ctx.calibration_note}"]
    return Prepared("ort-int8", _session(int8, ctx.threads), runtime, notes)
