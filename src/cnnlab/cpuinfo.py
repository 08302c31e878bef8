"""What the CPU is and which instructions it has, read from ``/proc/cpuinfo`` (no torch).

The training recipe (``precision=auto``), the bf16 inference backend and the leaderboard's machine
fingerprint all ask the same questions; this module answers them once. Every function takes the
text of a ``cpuinfo`` file for tests; without it, this machine's ``/proc/cpuinfo`` is read (once).

>>> sorted(cpu_flags("processor : 0\\nflags : fpu avx2 fma\\n"))
['avx2', 'fma', 'fpu']
>>> cpu_model("model name : Test CPU\\n")
'Test CPU'
>>> cpu_description("model name : AMD EPYC\\ncpu family : 26\\nmodel : 2\\nflags : avx2 avx512f avx512_bf16 "
...                 "hypervisor\\n")
'AMD EPYC (family 26, model 2, hypervisor guest; avx2 avx512f avx512_bf16)'
"""

from __future__ import annotations

import platform
from functools import lru_cache

__all__ = ["BF16_FLAGS", "cpu_description", "cpu_flags", "cpu_model", "cpuinfo_field"]

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that compute bf16 dot products natively


@lru_cache(maxsize=1)
def _proc_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # not Linux, or no /proc
        return ""


def cpuinfo_field(names: str | tuple[str, ...], cpuinfo: str | None = None) -> str | None:
    """The value of the first line whose key is one of ``names`` (the first CPU's), or None."""
    wanted = (names,) if isinstance(names, str) else names
    for line in (_proc_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in wanted:
            return value.strip()
    return None


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name (``model name``; ``platform.processor()`` where cpuinfo has none)."""
    return cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first CPU (``flags`` on x86, ``Features`` on ARM); empty where unknown."""
    return frozenset((cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())


def cpu_description(cpuinfo: str | None = None) -> str:
    """The model name with what tells machine classes apart: family and model numbers, a virtual
    machine, and the vector extensions that decide training speed (AVX2, AVX-512, bf16, AMX)."""
    flags = cpu_flags(cpuinfo)
    family, model = cpuinfo_field("cpu family", cpuinfo), cpuinfo_field("model", cpuinfo)
    ids = [f"family {family}" if family else "", f"model {model}" if model else ""]
    ids.append("hypervisor guest" if "hypervisor" in flags else "")
    vector = " ".join(f for f in ("avx2", "avx512f", *BF16_FLAGS, "amx_tile") if f in flags)
    detail = ", ".join(i for i in ids if i) + (f"; {vector}" if vector else "")
    return f"{cpu_model(cpuinfo)} ({detail})" if detail else cpu_model(cpuinfo)
