"""What the ``cnnlab train`` CLI tests share: a tiny run's options, an isolated working directory and a runner
that checks the exit code (and, for user errors, one paragraph without a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli.main import main

# one epoch of batch 32, one thread, fp32, plain progress lines, no report
TINY = ["--no-report", "--epochs", "1", "--set", "batch_size=32", "--set", "threads=1", "--set", "precision=fp32",
        "--set", "progress=plain"]  # fmt: skip
WIDTHS = ["--set", 'model_kwargs={"widths": [4, 8, 8, 16]}']  # a 4-8-8-16 FastNet


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Work in ``tmp_path`` with its own cache and no ``$CNNLAB_DATA``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_train(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str, code: int = 0) -> str:
    """Run ``cnnlab train`` on the IDX set in ``data_dir``; assert the exit code; stderr as one line of words."""
    got = main(["train", "--data", "fashion-mnist", "--data-dir", str(data_dir), *argv])
    err = capsys.readouterr().err
    assert got == code, err
    if code == 2:
        assert err.startswith("error: ") and "Traceback" not in err and "\n\n" not in err.strip()
    return " ".join(err.split())
