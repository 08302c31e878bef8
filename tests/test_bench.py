"""cnnlab bench on real checkpoints: backends agree with eager, accuracy on the full test split,
ONNX fallback naming the operator, tampered checkpoints refused with nothing recorded, --compare."""

from __future__ import annotations

import hashlib
import json
import re
import statistics

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save as st_save_bytes

from cnnlab.bench import Leaderboard
from cnnlab.bench.backends import BackendContext, BackendUnavailable, prepare_backend
from cnnlab.bench.runner import BenchConfig, BenchTarget, run_bench
from cnnlab.cli.main import main
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.train.checkpoint import META_NAME, WEIGHTS_NAME, load_run, preprocess, save_model, sha256_file

WIDTHS = [4, 8, 8, 16]
NORM = {"mean": [0.286], "std": [0.353]}
QUICK = ["--repeats", "5", "--warmup", "1", "--throughput-batch", "64", "--throughput-seconds", "0"]


def _meta() -> dict[str, object]:
    return {
        "model": "fastnet", "model_kwargs": {"widths": WIDTHS}, "num_classes": 10, "in_chans": 1,
        "input_size": [1, 28, 28], "normalization": NORM, "dataset": "fashion-mnist", "task": "classification",
    }  # fmt: skip


def _train_tiny(seed: int) -> nn.Module:
    """A tiny FastNet fitted for a few steps, so that its accuracy is far from chance and predictions vary."""
    torch.manual_seed(seed)
    model = create_model("fastnet", widths=tuple(WIDTHS))
    train = load_dataset("fashion-mnist", "train")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(60):  # 25 sufficed before FastNet scaled its logits by 0.25 (then 0.30-0.52)
        idx = torch.arange(step * 128, (step + 1) * 128)
        loss = F.cross_entropy(model(preprocess(train.images[idx], _meta())), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    save_model(_train_tiny(0), _meta(), path)
    return path


@pytest.fixture(scope="module")
def test_accuracy(run_dir):
    """The reference: plain model(x).argmax over the whole test split, computed here independently."""
    model = load_run(run_dir).model
    test = load_dataset("fashion-mnist", "test")
    with torch.no_grad():
        pred = torch.cat(
            [model(preprocess(test.images[i : i + 2000], _meta())).argmax(1) for i in range(0, 10000, 2000)]
        )
    return int((pred == test.labels).sum()) / len(test)


def _ctx(tmp_path, **kw):
    return BackendContext((1, 28, 28), threads=1, workdir=tmp_path, **kw)


def test_ort_fp32_equals_eager_within_1e4(run_dir, tmp_path):
    model = load_run(run_dir).model
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))  # batch 3: the batch axis is dynamic
    eager = prepare_backend("eager", model, _ctx(tmp_path)).predict(x)
    ort = prepare_backend("ort", model, _ctx(tmp_path)).predict(x)
    assert ort.shape == (3, 10) and ort.dtype == torch.float32
    torch.testing.assert_close(ort, eager, atol=1e-4, rtol=0)
    assert eager.std() > 0.1  # the outputs are not trivially equal


def test_channels_last_equals_eager(run_dir, tmp_path):
    model = load_run(run_dir).model
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(
        prepare_backend("channels_last", model, _ctx(tmp_path)).predict(x),
        prepare_backend("eager", model, _ctx(tmp_path)).predict(x), atol=1e-4, rtol=1e-4,
    )  # fmt: skip


def test_bf16_skipped_with_the_reason_without_native_support(run_dir, tmp_path):
    with pytest.raises(BackendUnavailable, match=r"bf16 skipped: the CPU has no native bf16 .*avx512_bf16"):
        prepare_backend("bf16", load_run(run_dir).model, _ctx(tmp_path, cpu_flags=frozenset({"avx2", "fma"})))


def test_bench_cli_records_verified_rows(run_dir, test_accuracy, tmp_path, capsys):
    db = tmp_path / "lb.sqlite"
    argv = ["bench", str(run_dir), "--backend", "eager,ort,ort-int8", "--record", "--db", str(db), "--format", "json"]
    assert main([*argv, *QUICK]) == 0
    report = json.loads(capsys.readouterr().out)
    results = {r["backend"]: r for r in report["results"]}
    assert report["test_images"] == 10000 and report["config"]["batch_size"] == 4  # the seed's rule is the default
    assert report["params"] == sum(p.numel() for p in load_run(run_dir).model.parameters()) and report["macs"] > 0
    assert results["eager"]["accuracy"] == pytest.approx(test_accuracy, abs=1e-12)
    assert 0.4 < test_accuracy < 0.95  # trained a little: far from chance, so agreement means something
    assert abs(results["ort"]["accuracy"] - test_accuracy) <= 0.0005  # fp32: at most a few near-ties flip
    assert 0 <= results["ort-int8"]["accuracy"] <= 1 and "calibrated on 256" in results["ort-int8"]["notes"][0]
    for r in results.values():
        assert r["status"] == "ok" and r["latency"]["n"] == 5 and r["latency"]["median_ms"] > 0
    rows = Leaderboard(db).rows()
    assert [r["backend"] for r in rows] == ["eager", "ort", "ort-int8"]
    assert {r["checkpoint_sha256"] for r in rows} == {sha256_file(run_dir / WEIGHTS_NAME)}
    assert {(r["batch_size"], r["threads"], r["latency_n"], r["dataset"]) for r in rows} == {(4, 1, 5, "fashion-mnist")}
    assert rows[1]["runtime_version"].startswith("onnxruntime") and rows[0]["torch_version"] == torch.__version__
    assert report["recorded"]["ids"] == [r["id"] for r in rows]
    assert report["recorded_by_train"] == {}  # this run has no metrics.json


def test_bench_cli_text_for_an_untrained_registered_model(capsys):
    assert main(["bench", "fastnet", "--backend", "eager", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "speed only (untrained model, no dataset)" in out and "threads 1" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("eager"))
    assert line.split()[1] == "-"  # no accuracy without a trained checkpoint


# --------------------------------------------------------------------------------------------------
# integrity: a tampered checkpoint is refused and nothing is recorded


def _copy_run(src, dst):
    dst.mkdir()
    for name in (WEIGHTS_NAME, META_NAME):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _rewrite_meta(run, data: bytes) -> None:
    meta = json.loads((run / META_NAME).read_text())
    meta.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (run / META_NAME).write_text(json.dumps(meta))


def _flip_byte(run):
    data = bytearray((run / WEIGHTS_NAME).read_bytes())
    data[-10] ^= 0xFF  # one weight changed, same size
    (run / WEIGHTS_NAME).write_bytes(bytes(data))


def _truncate(run):
    (run / WEIGHTS_NAME).write_bytes((run / WEIGHTS_NAME).read_bytes()[:-100])


def _truncate_and_rehash(run):
    # a truncated file whose model.json was "fixed" to match it: the safetensors reader must refuse it
    data = (run / WEIGHTS_NAME).read_bytes()[:-100]
    (run / WEIGHTS_NAME).write_bytes(data)
    _rewrite_meta(run, data)


def _wrong_shapes(run):
    # weights of another architecture, with a consistent hash: only the shape check can catch it
    other = create_model("fastnet", widths=(4, 8, 8, 32)).state_dict()
    data = st_save_bytes({k: v.contiguous() for k, v in other.items()}, metadata={"format": "cnnlab-checkpoint"})
    (run / WEIGHTS_NAME).write_bytes(data)
    _rewrite_meta(run, data)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_flip_byte, r"does not match its model\.json: sha256"),
        (_truncate, r"is truncated: \d+ bytes on disk"),
        (_truncate_and_rehash, "is not a readable safetensors file"),
        (_wrong_shapes, r"does not fit the model FastNet: shape mismatch"),
    ],
)
def test_tampered_checkpoint_is_refused_and_nothing_recorded(run_dir, tmp_path, capsys, tamper, message):
    run = _copy_run(run_dir, tmp_path / "run")
    tamper(run)
    db = tmp_path / "lb.sqlite"
    assert main(["bench", str(run), "--backend", "eager", "--record", "--db", str(db), *QUICK]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: checkpoint")
    assert captured.out == ""
    assert re.search(message, " ".join(captured.err.split()))
    assert not db.exists() and Leaderboard(db).count() == 0


# --------------------------------------------------------------------------------------------------
# a model ONNX export cannot handle


@torch.library.custom_op("cnnlab_bench_test::double_it", mutates_args=())
def double_it(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@double_it.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Unexportable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(double_it(self.conv(x)).mean((2, 3)))


def test_onnx_export_failure_names_the_operator_and_other_backends_run():
    target = BenchTarget(Unexportable().eval(), "unexportable", "test module", {"input_size": [1, 28, 28]})
    cfg = BenchConfig(backends=("eager", "ort", "ort-int8", "channels_last"), repeats=3, warmup=1,
                      throughput_batch=8, throughput_seconds=0)  # fmt: skip
    report = run_bench(target, cfg)
    status = {r.backend: r for r in report.results}
    assert status["eager"].status == "ok" and status["channels_last"].status == "ok"
    for name in ("ort", "ort-int8"):
        assert status[name].status == "skipped"
        assert "torch.onnx cannot export the operator cnnlab_bench_test.double_it.default" in status[name].reason
        assert "the PyTorch backends still run" in status[name].reason
    assert len(report.leaderboard_rows()) == 2


# --------------------------------------------------------------------------------------------------
# --compare


def test_compare_two_backends_interleaved(run_dir, capsys):
    argv = ["bench", str(run_dir), "--compare", "eager", "channels_last", "--repeats", "8", "--warmup", "1"]
    assert main([*argv, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["a"], out["b"], out["n"], len(out["ratios"])) == ("eager", "channels_last", 8, 8)
    assert out["median_ratio"] == pytest.approx(statistics.median(out["ratios"]))


def test_compare_two_checkpoints_text(run_dir, tmp_path, capsys):
    other = tmp_path / "other"
    meta = {**_meta(), "model_kwargs": {"widths": [4, 8, 8, 32]}}
    save_model(create_model("fastnet", widths=(4, 8, 8, 32)).eval(), meta, other)
    assert (
        main(["bench", "--compare", str(run_dir), str(other), "--backend", "eager", "--repeats", "6", "--warmup", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "ratio time(fastnet:eager) / time(fastnet:eager) per pair" not in out  # same names are disambiguated
    assert "ratio time(A (fastnet:eager)) / time(B (fastnet:eager)) per pair:" in out
    ratios = out.split("per pair:\n")[1].splitlines()[0].split()
    assert len(ratios) == 6 and "median ratio" in out


def test_bench_cli_errors(run_dir, capsys):
    assert main(["bench"]) == 2
    assert "cnnlab bench needs TARGET" in capsys.readouterr().err
    assert main(["bench", str(run_dir), "--compare", "eager", "ort", "--record"]) == 2
    assert "--record cannot be combined with --compare" in capsys.readouterr().err
    assert main(["bench", str(run_dir), "--backend", "tensorrt"]) == 2
    assert "unknown ['tensorrt']" in capsys.readouterr().err
    assert main(["bench", "--compare", str(run_dir), str(run_dir), "--backend", "eager,ort"]) == 2
    assert "Pass a single one" in " ".join(capsys.readouterr().err.split())
    assert main(["bench", "fastnett"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "TARGET 'fastnett' is neither an existing run directory" in err and "Did you mean: fastnet" in err
    # The default --backend names two backends: say so instead of echoing a value the user never typed.
    assert main(["bench", "--compare", str(run_dir), str(run_dir)]) == 2
    assert "the default --backend eager,ort names 2" in " ".join(capsys.readouterr().err.split())


def test_bench_cli_refuses_settings_that_would_measure_the_wrong_thing(run_dir, tmp_path, capsys):
    import os

    too_many = str((os.cpu_count() or 1) + 1)  # oversubscribed threads time the scheduler (148 ms, not 2)
    assert main(["bench", "fastnet", "--threads", too_many, "--backend", "eager"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--threads (BenchConfig.threads) must be at most the {os.cpu_count()} logical cores" in err
    assert main(["bench", "fastnet", "--throughput-seconds", "-1"]) == 2
    assert "Use for example --throughput-seconds 1.0" in " ".join(capsys.readouterr().err.split())
    # --input is for registered models: on a run it used to blame model.json and the dataset.
    assert main(["bench", str(run_dir), "--input", "3,32,32", "--backend", "eager"]) == 2
    assert "applies only to a registered model name" in " ".join(capsys.readouterr().err.split())


def test_bench_record_checks_the_database_before_measuring(run_dir, tmp_path, capsys):
    # A folder as --db used to fail with a raw sqlite3 traceback after the whole measurement.
    assert main(["bench", str(run_dir), "--backend", "eager", "--record", "--db", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "is a folder" in captured.err and "measuring" not in captured.err and "Traceback" not in captured.err
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("my notes\n")
    assert main(["bench", str(run_dir), "--backend", "eager", "--record", "--db", str(not_a_db)]) == 2
    captured = capsys.readouterr()
    assert "cannot be opened" in captured.err and "measuring" not in captured.err
    assert not_a_db.read_text() == "my notes\n"


def test_segmentation_run_scores_pixels_on_the_trained_data_options(tmp_path, capsys):
    # a segmentation checkpoint trained on generated shapes with non-default options: bench must use the same ones
    opts = {"n": 24, "size": 32}
    model = create_model("segnet", widths=(4, 8, 16), num_classes=4).eval()
    meta = {
        "model": "segnet", "model_kwargs": {"widths": [4, 8, 16]}, "num_classes": 4, "in_chans": 1,
        "input_size": [1, 32, 32], "normalization": {"mean": [0.26], "std": [0.25]}, "dataset": "shapes",
        "task": "segmentation", "config": {"data_opts": opts},
    }  # fmt: skip
    save_model(model, meta, tmp_path / "seg")
    assert main(["bench", str(tmp_path / "seg"), "--backend", "eager", "--format", "json", *QUICK]) == 0
    report = json.loads(capsys.readouterr().out)
    test = load_dataset("shapes", "test", **opts)
    with torch.no_grad():
        pred = model(preprocess(test.images, meta)).argmax(1)  # (N, H, W) class per pixel
    expected = int((pred == test.masks).sum()) / test.masks.numel()
    metrics = report["results"][0]["metrics"]
    assert report["test_images"] == len(test) and report["task"] == "segmentation"
    assert metrics["pixel_accuracy"] == pytest.approx(expected) and metrics["accuracy"] == metrics["pixel_accuracy"]
    assert 0 <= metrics["mean_iou"] <= 1


@pytest.mark.parametrize(("limit", "said"), [(1000, "on its first 1,000 test images"), (20000, "on the test split")])
def test_bench_names_the_subset_training_scored(run_dir, tmp_path, capsys, limit, said):
    # A limit at or above the split's size scored the whole split: a 4-image folder run was said to
    # have been scored "on its first 1,000 test images".
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "config": {"limit_test": limit}}))
    assert main(["bench", str(run), "--backend", "eager", *QUICK]) == 0
    assert f"cnnlab train recorded test accuracy 0.5000 {said} for this run\n" in capsys.readouterr().out


def test_bench_says_why_the_training_accuracy_can_differ(run_dir, tmp_path, capsys):
    # Training scored with flip TTA in bf16, bench's eager once in fp32: 0.5358 beside 0.5327, unexplained.
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    saved = {"test_accuracy": 0.5, "precision": "bf16", "config": {"tta_flip": True}}
    (run / "metrics.json").write_text(json.dumps(saved))
    assert main(["bench", str(run), "--backend", "eager", *QUICK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("for this run, averaging each image with its mirror (flip TTA) and in bf16; bench's eager row scores "
            "each image once in fp32, so the two can differ") in out  # fmt: skip


def test_reconstruction_run_shows_its_mse_in_the_table(tmp_path, capsys):
    # An autoencoder's table showed '-' for accuracy on every backend and no score at all (MSE was in JSON only).
    model = create_model("conv_autoencoder", widths=(4, 8, 8), code_channels=2).eval()
    meta = {
        "model": "conv_autoencoder", "model_kwargs": {"widths": [4, 8, 8], "code_channels": 2}, "num_classes": 1,
        "in_chans": 1, "input_size": [1, 28, 28], "normalization": NORM, "dataset": "fashion-mnist",
        "task": "reconstruction",
    }  # fmt: skip
    save_model(model, meta, tmp_path / "ae")
    assert main(["bench", str(tmp_path / "ae"), "--backend", "eager", "--format", "json", *QUICK]) == 0
    mse = json.loads(capsys.readouterr().out)["results"][0]["metrics"]["mse"]
    assert main(["bench", str(tmp_path / "ae"), "--backend", "eager", *QUICK]) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line.split() for line in table if line.startswith("backend"))
    row = next(line.split() for line in table if line.startswith("eager"))
    assert header[:3] == ["backend", "MSE", "vs"] and "accuracy" not in header  # a reconstruction has none
    assert float(row[1]) == pytest.approx(mse, abs=1e-6)
