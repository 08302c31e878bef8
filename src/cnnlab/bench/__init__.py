"""Accuracy and speed measured by cnnlab itself, fast inference backends, and the SQLite leaderboard.

``cnnlab bench RUN`` scores a verified checkpoint on the full test split and times it at batch size 4
(the seed's leaderboard rule) on each backend (:mod:`cnnlab.bench.backends`); ``--record`` stores one
row per backend in the :class:`Leaderboard`. Importing this package is light: the leaderboard and the
fingerprint need no torch; the measuring parts are imported on first use.

>>> from cnnlab.bench import Leaderboard, default_db_path
>>> default_db_path().name
'leaderboard.sqlite'
"""

from __future__ import annotations

import importlib
from typing import Any

from cnnlab.bench.fingerprint import Fingerprint, machine_fingerprint
from cnnlab.bench.leaderboard import COLUMNS, SCHEMA_VERSION, Leaderboard, default_db_path, pareto_front

_LAZY = {
    "BACKENDS": "cnnlab.bench.backends",
    "DEFAULT_BACKENDS": "cnnlab.bench.backends",
    "BackendUnavailable": "cnnlab.bench.backends",
    "parse_backends": "cnnlab.bench.backends",
    "BenchConfig": "cnnlab.bench.runner",
    "BenchReport": "cnnlab.bench.runner",
    "BenchTarget": "cnnlab.bench.runner",
    "load_target": "cnnlab.bench.runner",
    "run_bench": "cnnlab.bench.runner",
    "run_compare": "cnnlab.bench.runner",
    "CompareResult": "cnnlab.bench.compare",
    "interleaved": "cnnlab.bench.compare",
}


def __getattr__(name: str) -> Any:
    # The torch-dependent half is imported on first use, so `cnnlab leaderboard` starts instantly.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab.bench' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "COLUMNS",
    "DEFAULT_BACKENDS",
    "SCHEMA_VERSION",
    "BackendUnavailable",
    "BenchConfig",
    "BenchReport",
    "BenchTarget",
    "CompareResult",
    "Fingerprint",
    "Leaderboard",
    "default_db_path",
    "interleaved",
    "load_target",
    "machine_fingerprint",
    "pareto_front",
    "parse_backends",
    "run_bench",
    "run_compare",
]
