"""Checkpoint contract 6: save_model / load_run / preprocess, integrity errors, the training state file."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from cnnlab.errors import CheckpointError
from cnnlab.models import create_model
from cnnlab.train.checkpoint import (
    META_NAME,
    WEIGHTS_NAME,
    atomic_write_bytes,
    load_run,
    load_train_state,
    preprocess,
    save_model,
    save_train_state,
)

SMALL = {"widths": [8, 8, 16, 16]}


def _meta(num_classes: int = 10) -> dict:
    return {
        "model": "fastnet",
        "model_kwargs": SMALL,
        "num_classes": num_classes,
        "in_chans": 1,
        "input_size": [1, 28, 28],
        "dataset": "fashion-mnist",
        "classes": [str(i) for i in range(num_classes)],
        "normalization": {"mean": [0.286], "std": [0.353]},
    }


@pytest.fixture
def saved_run(tmp_path):
    torch.manual_seed(0)
    model = create_model("fastnet", **SMALL).eval()
    save_model(model, _meta(), tmp_path)
    return tmp_path, model


def test_round_trip_gives_identical_outputs(saved_run):
    run_dir, model = saved_run
    loaded = load_run(run_dir)
    assert not loaded.model.training
    assert loaded.weights_path == run_dir / WEIGHTS_NAME
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    meta = json.loads((run_dir / META_NAME).read_text())
    assert len(meta["sha256"]) == 64 and meta["bytes"] == (run_dir / WEIGHTS_NAME).stat().st_size
    assert load_run(run_dir / WEIGHTS_NAME).meta["model"] == "fastnet"  # the file path works too


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"has no model\.safetensors"):
        load_run(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nope.safetensors")


def test_missing_meta_is_reported(saved_run):
    run_dir, _ = saved_run
    (run_dir / META_NAME).unlink()
    with pytest.raises(CheckpointError, match=r"has no model\.json beside it"):
        load_run(run_dir)


def test_truncated_file_is_reported(saved_run):
    run_dir, _ = saved_run
    path = run_dir / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="is truncated"):
        load_run(run_dir)


def test_tampered_file_is_reported(saved_run):
    run_dir, _ = saved_run
    path = run_dir / WEIGHTS_NAME
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip the bits of one weight byte, same size
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"sha256 \w+\.\.\. on disk"):
        load_run(run_dir)


def test_shape_mismatch_is_reported(saved_run):
    run_dir, _ = saved_run
    meta = json.loads((run_dir / META_NAME).read_text())
    meta["num_classes"] = 7  # the file holds a 10-class head
    (run_dir / META_NAME).write_text(json.dumps(meta))
    expected = r"shape mismatch .*fc\.weight: checkpoint \(10, 16\) vs model \(7, 16\)"
    with pytest.raises(CheckpointError, match=expected):
        load_run(run_dir)


def test_preprocess_matches_training_normalisation():
    meta = _meta()
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out = preprocess(x, meta)
    expected = (torch.tensor([0.0, 1.0]) - 0.286) / 0.353
    torch.testing.assert_close(out.flatten(), expected)
    with pytest.raises(ValueError, match="trained on 1-channel images but received 3 channels"):
        preprocess(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), meta)


def test_train_state_round_trip_without_pickle(tmp_path):
    tensors = {"model/w": torch.randn(3, 4), "rng/torch": torch.get_rng_state()}
    info = {"epoch": 2, "step": 17, "history": [{"epoch": 1, "loss": 0.5}]}
    path = save_train_state(tmp_path / "state.safetensors", tensors, info)
    loaded, loaded_info = load_train_state(path)
    assert loaded_info == info
    torch.testing.assert_close(loaded["model/w"], tensors["model/w"])
    assert torch.equal(loaded["rng/torch"], tensors["rng/torch"])
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="is damaged"):
        load_train_state(path)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


WRITER = """
import sys, torch
from cnnlab.models import create_model
from cnnlab.train.checkpoint import save_model, save_train_state
run, meta = sys.argv[1], {"model": "fastnet", "num_classes": 10, "in_chans": 1}
model = create_model("fastnet")
print("writing", flush=True)
epoch = 0
while True:  # write checkpoints back to back until killed
    epoch += 1
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_train_state(run + "/train_state.safetensors", model.state_dict(), {"epoch": epoch})
    save_model(model, {**meta, "epoch": epoch}, run)
"""


def test_sigkill_during_writes_never_leaves_a_half_written_file(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load as st_load_bytes

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    time.sleep(1.0)  # the process does nothing but write: the kill lands inside one write or another
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _, info = load_train_state(tmp_path / "train_state.safetensors")  # whole, or this raises
    weights = st_load_bytes((tmp_path / WEIGHTS_NAME).read_bytes())
    meta = json.loads((tmp_path / META_NAME).read_text())
    assert info["epoch"] >= 2 and meta["epoch"] >= 1 and len(weights) > 0
    try:  # the pair is from one save, or (killed between the two renames) the mismatch is reported
        load_run(tmp_path)
    except CheckpointError as err:
        assert "killed between writing the two files" in str(err)
    temps = [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    assert all(name.startswith(".") for name in temps), temps  # hidden names no loader reads


def test_no_code_path_unpickles():
    import re
    from pathlib import Path

    import cnnlab

    offenders = []
    for path in Path(cnnlab.__file__).parent.rglob("*.py"):
        text = path.read_text()
        if re.search(r"^\s*(from pickle|import dill|import joblib)", text, re.M):
            offenders.append(f"{path.name}: imports a pickle module")
        # pickle only through an Unpickler whose find_class allows named globals (the CIFAR Python release's
        # NumPy arrays); never pickle.load/loads, which build whatever a file names
        unsafe = re.search(r"pickle\.loads?\(", text) or "def find_class" not in text
        if re.search(r"^\s*import pickle", text, re.M) and unsafe:
            offenders.append(f"{path.name}: unpickles without a find_class allow-list")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path.name}: {call}")
    assert offenders == []


def test_a_pickled_file_under_the_checkpoint_name_is_refused(saved_run):
    run_dir, model = saved_run
    torch.save(model.state_dict(), run_dir / WEIGHTS_NAME)  # a pickle, as torch.save writes it
    meta = json.loads((run_dir / META_NAME).read_text())
    meta.update(sha256=__import__("hashlib").sha256((run_dir / WEIGHTS_NAME).read_bytes()).hexdigest(), bytes=0)
    (run_dir / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        load_run(run_dir)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.txt", r"'.*notes\.txt' is not a model checkpoint: it is a \.txt file\. .*pass a run directory or the "
         r"model\.safetensors inside one"),
        ("train_state.safetensors", r"is not a model checkpoint: it is the training state of a run \(optimizer "
         r"moments, RNG states, epoch\), which --resume reads\. "
         r".*pass its run directory '.*' or '.*model\.safetensors'"),
        ("config.json", r"is not a model checkpoint: it is the settings of a run\. .*pass its run directory"),
        ("model.json", r"it is the metadata that goes with model\.safetensors"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(saved_run, name, expected):
    """A run's other files or a text file gave advice about a missing notes.json or sha256 beside them."""
    run_dir, _ = saved_run
    path = run_dir / name
    if not path.exists():
        path.write_text("{}")
    with pytest.raises(CheckpointError, match=expected):
        load_run(path)
    assert load_run(run_dir / WEIGHTS_NAME).meta["model"] == "fastnet"  # the weights file itself still loads


def test_a_run_stopped_in_its_first_epoch_says_how_to_finish_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Stopped before epoch 1 ended, a run has config.json and train_state.safetensors but no model: bench,
    # viz and report called it "not a run" / "no model.safetensors" instead of pointing at --resume.
    from cnnlab.cli.main import main
    from cnnlab.train.checkpoint import STATE_NAME

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / STATE_NAME).write_bytes(b"state")
    run = str(tmp_path)
    for argv in (["bench", run, "--backend", "eager"], ["viz", "filters", run], ["report", run]):
        assert main(argv) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "holds a run that stopped before its first epoch ended" in err, argv
        assert f"cnnlab train --resume --out {tmp_path}" in err, argv
