"""Kill test: a run killed mid-epoch (SIGKILL) or stopped with Ctrl-C or SIGTERM resumes with ``--resume``
and finishes bit-identical to an uninterrupted run with the same seed (CPU, one thread, deterministic).

Every run is a real ``python -m cnnlab train`` subprocess on a small synthetic IDX dataset written
by the test, so the data never depends on what is installed on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _idx_files import write_striped_mnist
from cnnlab.train.checkpoint import STATE_NAME, load_run, load_train_state

EPOCHS = 4
STEPS = 33  # steps per epoch: 1200 images - 10% validation = 1080, in batches of 32 (last one dropped)
TIMING = ("epoch_seconds", "images_per_second")  # wall-clock fields: the only ones allowed to differ


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    write_striped_mnist(root / "data")
    return root


def _command(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "cnnlab", "train", "--no-report",
        "--data", "fashion-mnist", "--data-dir", str(root / "data"),
        "--epochs", str(EPOCHS), "--out", str(out), "--seed", "3",
        "--set", 'model_kwargs={"widths": [4, 8, 8, 16]}', "--set", "batch_size=32", "--set", "threads=1",
        "--set", "deterministic=true", "--set", "precision=fp32", "--set", "progress=plain",
        "--set", "flip=true", "--set", "ema_decay=0.9", *extra,
    ]  # fmt: skip


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CNNLAB_DATA", "CNNLAB_MIRROR", "WORLD_SIZE", "RANK")}
    return {**env, "XDG_CACHE_HOME": str(root / "cache"), "CI": "true", "OMP_NUM_THREADS": "1"}


def _run(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(_command(root, out, *extra), env=_env(root), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def _start_and_signal(root: Path, out: Path, sig: signal.Signals, *extra: str) -> tuple[int, str]:
    """Start a run, send ``sig`` once its first epoch is recorded in metrics.jsonl; its exit code and stderr."""
    proc = subprocess.Popen(
        _command(root, out, *extra), env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    history = out / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while not (history.is_file() and history.read_text().strip()):
        assert proc.poll() is None, f"the run ended before its first epoch: {proc.communicate()}"
        assert time.monotonic() < deadline, "no epoch finished within 90 s"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)  # reads and closes the pipes
    return proc.returncode, stderr


def _comparable(run_dir: Path) -> dict[str, object]:
    """Everything a run leaves that must be identical across an interruption (timings dropped)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [{k: v for k, v in r.items() if k not in TIMING} for r in metrics["history"]]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in lines] == history
    return {
        "history": history,
        "test": {k: metrics[k] for k in ("test_accuracy", "test_loss", "confusion_matrix", "epochs", "steps")},
        "weights_sha256": json.loads((run_dir / "model.json").read_text())["sha256"],
    }


def _assert_every_file_is_whole(run_dir: Path) -> int:
    """Load every file of the run directory as its reader would; returns the completed epochs."""
    for name in ("config.json", "model.json"):
        json.loads((run_dir / name).read_text())
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    load_run(run_dir)  # checks size and sha256 against model.json, then loads the weights
    _, info = load_train_state(run_dir / STATE_NAME)
    # A kill during a write can leave only a hidden temp file, under a name no loader reads.
    leftovers = [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert all(p.startswith(".") for p in leftovers), leftovers
    return int(info["epoch"])


@pytest.fixture(scope="module")
def reference(workdir: Path) -> dict[str, object]:
    out = workdir / "uninterrupted"
    _run(workdir, out)
    return _comparable(out)


def test_sigkill_mid_epoch_then_resume_is_bit_exact(workdir: Path, reference: dict[str, object]) -> None:
    out = workdir / "killed"
    code, _ = _start_and_signal(workdir, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    done = _assert_every_file_is_whole(out)
    assert 1 <= done < EPOCHS, f"the kill came too late to test anything (after epoch {done})"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == done

    resumed = _run(workdir, out, "--resume")
    assert f"resuming {out} after epoch {done} (step {done * STEPS})" in resumed.stderr
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # stale temp files are cleared
    epochs_trained = [int(line.split()[1]) for line in resumed.stderr.splitlines() if line.startswith("epoch ")]
    assert epochs_trained == list(range(done + 1, EPOCHS + 1))  # from the last completed epoch on
    assert _assert_every_file_is_whole(out) == EPOCHS
    assert _comparable(out) == reference


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_the_state_and_says_how_to_resume(
    workdir: Path, reference: dict[str, object], sig: signal.Signals
) -> None:
    # SIGTERM is what `kill`, `docker stop` and a scheduler's pre-emption send: it used to end the run
    # at once, losing the epoch in progress.
    out = workdir / f"interrupted-{sig.name}"
    code, stderr = _start_and_signal(workdir, out, sig)
    assert code == 128 + sig, stderr  # as a shell reports the signal: 130 for Ctrl-C, 143 for SIGTERM
    assert "\ninterrupted\n" not in stderr  # the run's own message says it all (a bare 'interrupted' followed it)
    assert f"Continue with: cnnlab train --resume --out {out}" in stderr
    _, info = load_train_state(out / STATE_NAME)
    assert info["step"] == info["epoch"] * STEPS + info["batch"]
    # saved inside an epoch (a partial one); or at an epoch's end when the signal came during its evaluation or
    # checkpoint (late, on a loaded machine: that run used to go on, to the test split, and exit 0)
    inside = 0 < info["batch"] < STEPS and info["epoch"] < EPOCHS
    assert inside or (info["batch"] == 0 and 1 <= info["epoch"] <= EPOCHS), info
    assert "Traceback" not in stderr
    resumed = _run(workdir, out, "--resume")
    assert f"resuming {out} after epoch {info['epoch']}" in resumed.stderr
    assert _comparable(out) == reference


def test_resume_refuses_changed_settings(workdir: Path, reference: dict[str, object]) -> None:
    done = subprocess.run(
        [*_command(workdir, workdir / "uninterrupted", "--resume"), "--set", "lr=0.5"],
        env=_env(workdir), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "the settings differ from the interrupted run's (lr: 0.2 -> 0.5)" in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(workdir: Path, reference: dict[str, object]) -> None:
    # It used to print "resuming ... training ... done", re-score the test split and rewrite the files.
    out = workdir / "uninterrupted"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    done = subprocess.run(_command(workdir, out, "--resume"), env=_env(workdir), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    text = " ".join(done.stderr.split())
    assert f"has already completed {EPOCHS} epochs, and --epochs is {EPOCHS}: there is nothing left to train" in text
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # the run is unchanged


def test_resume_finishes_a_run_killed_after_its_last_checkpoint(workdir: Path, reference: dict[str, object]) -> None:
    # Killed between the last epoch's checkpoint and metrics.json, a run has all its epochs but no result:
    # --resume must run the final test pass, not call it finished.
    import shutil

    out = workdir / "no-metrics"
    shutil.copytree(workdir / "uninterrupted", out)
    (out / "metrics.json").unlink()
    done = _run(workdir, out, "--resume")
    assert "done:" in done.stderr and (out / "metrics.json").is_file()
    assert _comparable(out)["test"] == reference["test"]


def test_resume_of_a_fine_tuning_run_does_not_need_its_source_any_more(
    workdir: Path, reference: dict[str, object]
) -> None:
    # The architecture is in the run's own model.json and the weights in its training state; --resume
    # used to reload the --init-from source and failed with "checkpoint not found" once it was gone.
    import shutil

    source = workdir / "source"
    shutil.copytree(workdir / "uninterrupted", source)
    whole = workdir / "finetune-whole"
    _run(workdir, whole, "--init-from", str(source))
    out = workdir / "finetune-stopped"
    code, stderr = _start_and_signal(workdir, out, signal.SIGINT, "--init-from", str(source))
    assert code == 130, stderr
    _, info = load_train_state(out / STATE_NAME)
    assert info["epoch"] < EPOCHS
    early = workdir / "finetune-stopped-in-epoch-1"  # no model.json of its own: the source is still needed
    shutil.copytree(out, early)
    (early / "model.json").unlink()
    source.rename(workdir / "source-moved")
    resumed = _run(workdir, out, "--resume")
    assert f"resuming {out} after epoch {info['epoch']}" in resumed.stderr
    assert _comparable(out) == _comparable(whole)  # bit-identical to the fine-tuning run never stopped
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"] == "fastnet" and meta["init_from"] == str(source)
    assert meta["init_from_sha256"] == json.loads((workdir / "source-moved" / "model.json").read_text())["sha256"]
    done = subprocess.run(_command(workdir, early, "--resume"), env=_env(workdir), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    text = " ".join(done.stderr.split())
    assert f"--resume: this run was started with --init-from {source}, and it was stopped before its first" in text
    assert "Put the source run back, or start this run again with --overwrite." in text


def test_resume_with_a_different_set_of_trained_parameters_says_so(tmp_path: Path) -> None:
    """A run saved by a cnnlab that trained more parameters (FastNet's stem batch norm) cannot take its optimizer."""
    import torch
    from torch import nn

    from cnnlab.errors import CheckpointError
    from cnnlab.train.state import TrainState, restore_state, save_state

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    config = {"model": "tiny", "epochs": 2}
    state = TrainState(model, torch.optim.SGD(model.parameters()))
    path = save_state(tmp_path / "train_state.safetensors", state, config)
    model[0].requires_grad_(False)
    now = TrainState(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad]))
    with pytest.raises(CheckpointError, match=r"trains 4 parameter tensors \(per group: \[4\]\), but this run's model "
                       r"trains 2 .*Nothing was changed.*--init-from"):  # fmt: skip
        restore_state(path, now, config)
