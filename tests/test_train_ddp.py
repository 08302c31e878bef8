"""Two-process training with ``torchrun`` on CPU (gloo): the replicas end identical, only rank 0 writes.

Each rank prints the sha256 of its final weights and buffers (``cnnlab train`` does so whenever
``WORLD_SIZE > 1``); the test compares them. The batch-norm running statistics are the part DDP does
not synchronise by itself: ``fit()`` averages them over the ranks at the end of every epoch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from _idx_files import write_striped_mnist
from cnnlab.train.checkpoint import STATE_NAME
from cnnlab.train.runfiles import RunFiles
from cnnlab.train.state import TrainState


def test_two_processes_end_with_identical_weights_and_only_rank0_writes(tmp_path: Path) -> None:
    data = write_striped_mnist(tmp_path / "data", n_train=400, n_test=100)
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "cnnlab", "train", "--no-report", "--data", "fashion-mnist", "--data-dir", str(data), "--epochs", "2",
        "--out", str(out), "--set", 'model_kwargs={"widths": [4, 8, 8, 16]}', "--set", "batch_size=32",
        "--set", "threads=1", "--set", "precision=fp32", "--set", "ema_decay=0.9", "--set", "progress=plain",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("CNNLAB_DATA", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), OMP_NUM_THREADS="1", CI="true")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    hashes = dict(re.findall(r"rank (\d)/2 weights sha256 ([0-9a-f]{64})", output))
    assert sorted(hashes) == ["0", "1"], output
    assert hashes["0"] == hashes["1"]  # parameters AND batch-norm buffers agree across the replicas

    # Rank 0 alone reports and writes: one progress stream, one run directory, whole files.
    assert output.count("training fastnet on fashion-mnist") == 1
    assert len(re.findall(r"^epoch 2 ", output, re.M)) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs"] == 2
    # 360 training images (10% held out), 180 per rank, 16 per rank and step: 11 steps per epoch
    assert [r["step"] for r in metrics["history"]] == [11, 22]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "metrics.json", "metrics.jsonl", "model.json", "model.safetensors", STATE_NAME]
    )
    assert [p.name for p in tmp_path.iterdir() if p.name == "runs"] == []  # no rank wrote a default run dir


def test_a_disabled_run_writer_writes_nothing(tmp_path: Path) -> None:
    """What ranks other than 0 get: ``RunFiles(enabled=False)``, whose every method is a no-op."""
    model = torch.nn.Linear(2, 2)
    state = TrainState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    files = RunFiles(tmp_path / "rank1", enabled=False)
    files.write_config({"a": 1})
    files.checkpoint(state, {"model": "x", "num_classes": 2}, {"a": 1})
    files.save_interrupted(state, {"a": 1})
    files.write_metrics({"test_accuracy": 1.0})
    assert not (tmp_path / "rank1").exists()


def test_single_process_helpers_leave_values_alone() -> None:
    from cnnlab.train.distributed import DistInfo, agree_on_step, average_buffers, sum_over_ranks

    info = DistInfo()
    bn = torch.nn.BatchNorm1d(3)
    bn.running_mean.fill_(2.0)
    average_buffers(bn, info)
    assert bn.running_mean.tolist() == [2.0, 2.0, 2.0]
    loss = torch.tensor(0.5)
    assert agree_on_step(loss, True, info) == (loss, True)
    assert sum_over_ranks([1.0, 2.0], info) == [1.0, 2.0]


def test_a_mid_epoch_save_keeps_each_ranks_augmentation_stream(tmp_path: Path) -> None:
    from cnnlab.train.state import restore_state, save_state

    def new_state() -> TrainState:
        model = torch.nn.Linear(2, 2)
        return TrainState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))

    streams = [torch.Generator().manual_seed(seed) for seed in (11, 22)]
    saved = new_state()
    saved.aug_generator = streams[0]
    saved.rank_aug_states = [g.get_state() for g in streams]
    save_state(tmp_path / STATE_NAME, saved, {"a": 1})
    for rank, stream in enumerate(streams):
        restored = new_state()
        restore_state(tmp_path / STATE_NAME, restored, {"a": 1}, rank=rank)
        assert torch.equal(torch.rand(4, generator=restored.aug_generator), torch.rand(4, generator=stream))
