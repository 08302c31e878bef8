"""The Bag-of-Tricks pieces that are not a config flag on a torch class: EMA of the weights,
zero-gamma residual initialisation, flip test-time augmentation, freezing, and the numerics
(device, precision) chosen in one place.

>>> import torch.nn as nn
>>> ema = make_ema(nn.Linear(2, 2), decay=0.9)
>>> type(ema).__name__
'AveragedModel'
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnlab.cpuinfo import BF16_FLAGS, cpu_flags

__all__ = [
    "autocast",
    "cpu_flags",
    "cpu_has_native_bf16",
    "freeze_features",
    "make_ema",
    "predict_logits",
    "resolve_device",
    "resolve_precision",
    "reuse_freed_memory",
    "set_train_mode",
    "zero_gamma",
]


def make_ema(model: nn.Module, decay: float, *, warmup: bool = True) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (``ema = d*ema + (1-d)*w``).

    Call ``ema.update_parameters(model)`` after each optimizer step; evaluate ``ema.module``.
    With ``warmup`` the decay of update ``t`` is ``min(decay, (1 + t) / (10 + t))`` (TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``; timm's ``ModelEmaV3`` warm-up does the same job):
    a run of a few dozen steps, such as fine-tuning on a small folder, ends with weights close to the
    trained ones instead of an average dominated by the first step. At decay 0.99 the full decay is
    reached after 890 updates. ``warmup=False`` is torch's ``get_ema_multi_avg_fn(decay)``.

    >>> w = nn.Linear(1, 1, bias=False); _ = nn.init.zeros_(w.weight); ema = make_ema(w, 0.99)
    >>> ema.update_parameters(w); _ = nn.init.ones_(w.weight); ema.update_parameters(w)
    >>> round(ema.module.weight.item(), 4)  # update 1: decay min(0.99, 2/11)
    0.8182
    """
    if not warmup:
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)  # type: ignore[no-untyped-call]
    return AveragedModel(model, multi_avg_fn=_warmup_ema(decay), use_buffers=True)


_Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]  # torch.optim.swa_utils.PARAM_LIST


def _warmup_ema(decay: float) -> Callable[[_Tensors, _Tensors, torch.Tensor | int], None]:
    @torch.no_grad()
    def update(ema: _Tensors, current: _Tensors, n_averaged: torch.Tensor | int) -> None:
        # Called once per (device, dtype) group; n_averaged counts the updates before this one (a
        # resumed run restores it). Reading it is a host sync on CUDA, as fit()'s per-step loss already is.
        t = int(n_averaged)
        d = min(decay, (1 + t) / (10 + t))
        if ema[0].is_floating_point():
            torch._foreach_lerp_(ema, current, 1 - d)
        else:  # integer buffers (batch norm's num_batches_tracked): keep the model's count
            torch._foreach_copy_(ema, current)

    return update


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameter numbers


def reuse_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Ask glibc's malloc to keep freed blocks of up to ``limit_bytes`` for reuse; True where it could.

    It is a tendency, not a guarantee: glibc may still serve some blocks with fresh pages. Over 5
    FastNet training steps (fp32, batch 128, one thread; tests/test_train_tricks.py) 8 runs counted
    7,500-19,000 page faults by default and 0-1,700 with this call. A loop that allocates and frees one
    block size is erratic either way, because glibc's own dynamic threshold already reuses some.

    By default glibc serves large blocks (the activations of a CNN are megabytes) with fresh
    ``mmap`` pages and returns them to the kernel when freed, so every training step page-faults its
    activations and gradients in again and the kernel zeroes them. For FastNet at batch 256,
    ``benchmarks/conv_grad.py`` measured 2,500 minor page faults per step without this call and
    1,000 with it, both counted from the first step, and 1.02x the images per second. This is what jemalloc or tcmalloc
    (PyTorch's CPU performance advice) buy, done in process; the cost is that the process keeps its
    peak heap instead of shrinking after it.
    A no-op (False) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    settings = ((_M_MMAP_THRESHOLD, limit_bytes), (_M_TRIM_THRESHOLD, limit_bytes), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)


def zero_gamma(model: nn.Module) -> int:
    """Zero the last batch-norm scale of every residual block; returns how many blocks.

    A block says which its last batch norm is through ``zero_init_last()`` (the timm convention) or
    ``last_bn()`` (torchvision's ResNet blocks). Zeroing it makes every block the identity at step 0
    (Goyal et al. 2017; He et al. 2019, section 3.1).
    """
    count = 0
    for module in model.modules():
        if module is model:
            continue
        init, last_bn = getattr(module, "zero_init_last", None), getattr(module, "last_bn", None)
        if callable(init):
            if init() is False:  # a block with no last batch norm to zero (a spec body that ends in a conv)
                continue
        elif callable(last_bn):
            nn.init.zeros_(last_bn().weight)
        else:
            continue
        count += 1
    return count


def predict_logits(model: nn.Module, x: torch.Tensor, tta_flip: bool = False) -> torch.Tensor:
    """``model(x)``, or with ``tta_flip`` the mean of the logits of ``x`` and its mirror ``x.flip(-1)``.

    For segmentation outputs ``(B, K, H, W)`` the mirrored prediction is flipped back before averaging.
    """
    out = model(x)
    if not tta_flip:
        return out  # type: ignore[no-any-return]
    mirrored = model(x.flip(-1))
    if mirrored.ndim == 4:  # dense output: undo the mirror so pixels line up
        mirrored = mirrored.flip(-1)
    return (out + mirrored) / 2  # type: ignore[no-any-return]


def head_parameters(model: nn.Module, input_size: tuple[int, ...]) -> set[int]:
    """Ids of the parameters that ``forward_features`` does not use (the head).

    Found by running ``forward_features`` on one dummy image and seeing which parameters get a
    gradient, so it works for every model with the shared face, whatever its attribute names.
    """
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.grad = None
    x = torch.zeros(1, *input_size)
    model.forward_features(x).float().sum().backward()  # type: ignore[operator]
    used = {id(p) for p in model.parameters() if p.grad is not None}
    for p in model.parameters():
        p.grad = None
    model.train(was_training)
    return {id(p) for p in model.parameters()} - used


def freeze_features(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Freeze everything but the head; returns the number of trainable parameters left."""
    head = head_parameters(model, input_size)
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, except modules whose parameters are all frozen stay in eval mode.

    A frozen feature extractor must keep its batch-norm running statistics: updating them in train
    mode would change the features the new head learns on.
    """
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            module.eval()


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX-BF16) and torch has oneDNN.

    On other CPUs (AVX2 only, such as AMD EPYC before Zen 4 and most laptop parts) oneDNN emulates
    bf16 and it is slower than fp32, so ``precision=auto`` keeps fp32 there. torch's own
    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is not used: it answers True for any AVX-512 core
    CPU, including those that only emulate bf16. ``cpuinfo`` replaces ``/proc/cpuinfo`` (for tests).

    >>> cpu_has_native_bf16("flags : fpu sse2 avx2 fma")
    False
    """
    return bool(cpu_flags(cpuinfo) & set(BF16_FLAGS)) and torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; other names are checked for availability."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={name!r} asks for CUDA, but this torch build sees no GPU "
            f"(torch {torch.__version__}). Use device=auto or device=cpu."
        )
    return device


def resolve_precision(precision: str, device: torch.device, native_bf16: bool | None = None) -> str:
    """``auto`` -> bf16 on CUDA with bf16 support or on a CPU with native bf16, fp16 on older GPUs, else fp32.

    ``native_bf16`` overrides the CPU detection (:func:`cpu_has_native_bf16`); tests use it to check
    the choice for CPUs other than the one they run on.

    >>> resolve_precision("auto", torch.device("cpu"), native_bf16=False)
    'fp32'
    >>> resolve_precision("auto", torch.device("cpu"), native_bf16=True)
    'bf16'
    """
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        return "bf16" if native else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision=fp16 needs a CUDA device (it trains with a gradient scaler); on a CPU use "
            f"precision=bf16 (if the CPU has native bf16) or fp32. Received device={device}."
        )
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast to bf16/fp16 for the forward pass, or nothing for fp32."""
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
