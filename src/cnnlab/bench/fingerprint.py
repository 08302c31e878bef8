"""Which machine and which software measured a result: CPU model, core count, GPU, versions.

A leaderboard row is only comparable with rows measured on the same hardware, so every row carries
a short ``machine`` id: the first 12 hex digits of the sha256 of the CPU model, the logical core
count, the GPU name and the architecture. Nothing here needs torch except the GPU name.

>>> fp = machine_fingerprint(cpu_model="Test CPU", cpu_count=2, gpu="none")
>>> len(fp.machine), fp.describe()
(12, 'Test CPU, 2 cores, no GPU')
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from cnnlab.cpuinfo import BF16_FLAGS, cpu_flags, cpu_model

__all__ = ["Fingerprint", "cpu_flags", "cpu_model", "gpu_name", "machine_fingerprint", "native_bf16", "versions"]


@dataclass(frozen=True)
class Fingerprint:
    """The hardware a measurement ran on; ``machine`` is the short id stored in every row."""

    machine: str
    cpu_model: str
    cpu_count: int
    gpu: str  # "none" when no CUDA device is visible
    arch: str

    def describe(self) -> str:
        gpu = "no GPU" if self.gpu == "none" else f"GPU {self.gpu}"
        return f"{self.cpu_model}, {self.cpu_count} cores, {gpu}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def native_bf16(flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether the CPU computes bf16 natively, and the reason in words.

    >>> native_bf16(frozenset({"avx2"}))[0]
    False
    >>> native_bf16(frozenset({"avx512_bf16"}))
    (True, 'the CPU has avx512_bf16')
    """
    flags = cpu_flags() if flags is None else flags
    found = [f for f in BF16_FLAGS if f in flags]
    if found:
        return True, f"the CPU has {', '.join(found)}"
    return False, (
        f"the CPU has no native bf16 instructions ({' or '.join(BF16_FLAGS)} missing from its flags), so "
        "bf16 would be emulated in software and slower than fp32"
    )


@lru_cache(maxsize=1)
def gpu_name() -> str:
    """Name of CUDA device 0, or ``"none"`` (imports torch)."""
    import torch

    if torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    return "none"


def machine_fingerprint(
    *, cpu_model: str | None = None, cpu_count: int | None = None, gpu: str | None = None
) -> Fingerprint:
    """The fingerprint of this machine (arguments override the detected values, for tests and imports)."""
    model = cpu_model if cpu_model is not None else globals()["cpu_model"]()
    count = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    gpu = gpu if gpu is not None else gpu_name()
    arch = platform.machine() or "unknown"
    digest = hashlib.sha256(f"{model}|{count}|{gpu}|{arch}".encode()).hexdigest()[:12]
    return Fingerprint(machine=digest, cpu_model=model, cpu_count=count, gpu=gpu, arch=arch)


def versions() -> dict[str, str]:
    """Versions of cnnlab, Python, torch and (when installed) onnxruntime and onnx."""
    import cnnlab

    out = {"cnnlab": cnnlab.__version__, "python": platform.python_version()}
    for name in ("torch", "onnxruntime", "onnx"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        out[name] = str(getattr(module, "__version__", "unknown"))
    return out
