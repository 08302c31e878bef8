"""The training loop and every Bag-of-Tricks option: each one must change training, not be ignored."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cnnlab.train.checkpoint import sha256_file
from cnnlab.train.config import TrainConfig
from cnnlab.train.loop import Hooks, TrainingDiverged, fit
from cnnlab.train.optim import param_groups, peak_lr
from cnnlab.train.recipes import resolve_recipe
from cnnlab.train.schedule import lr_factor
from cnnlab.train.setup import load_data
from cnnlab.train.tasks import new_stats, summarize, task_loss, update_stats
from cnnlab.train.tricks import cpu_has_native_bf16, predict_logits, resolve_precision

TINY = {
    "model": "fastnet", "model_kwargs": {"widths": [4, 8, 8, 16]}, "limit_train": 160, "limit_test": 64,
    "val_fraction": 0.2, "batch_size": 32, "epochs": 1, "progress": "none", "threads": 1, "translate": 0,
    "label_smoothing": 0.0, "schedule": "constant", "warmup_epochs": 0.0, "lr": 0.05, "weight_decay": 0.0,
    "precision": "fp32", "channels_last": True,
}  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return load_data(TrainConfig.from_dict(TINY))


def _train(data, tmp_path, name: str, hooks: Hooks | None = None, **overrides):
    cfg = TrainConfig.from_dict({**TINY, **overrides})
    return fit(cfg, tmp_path / name, data=data, hooks=hooks)


def _weights(result) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in result.state.model.state_dict().items()}


def _differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory):
    return _weights(_train(data, tmp_path_factory.mktemp("base"), "run"))


def test_fit_writes_the_run_directory(data, tmp_path):
    result = _train(data, tmp_path, "run", epochs=2)
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"metrics.json", "metrics.jsonl", "config.json", "model.safetensors", "model.json",
            "train_state.safetensors"} <= files  # fmt: skip
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "train_seconds", "epochs", "model", "dataset", "params", "history"):
        assert key in metrics
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2 and metrics["model"] == "fastnet"
    assert len((result.run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert len(metrics["confusion_matrix"]) == 10 and sum(map(sum, metrics["confusion_matrix"])) == 64
    assert json.loads((result.run_dir / "config.json").read_text())["batch_size"] == 32
    assert json.loads((result.run_dir / "model.json").read_text())["config"]["epochs"] == 2
    assert metrics["checkpoint_sha256"] == sha256_file(result.run_dir / "model.safetensors")


def test_same_seed_same_weights_and_seed_matters(data, tmp_path, baseline):
    assert not _differ(baseline, _weights(_train(data, tmp_path, "again")))
    assert _differ(baseline, _weights(_train(data, tmp_path, "seed1", seed=1)))


@pytest.mark.parametrize(
    "overrides",
    [
        {"label_smoothing": 0.2},
        {"mixup_alpha": 0.4},
        {"grad_clip": 0.01},
        {"weight_decay": 0.5, "no_decay_bias_norm": False},
        {"optimizer": "adamw", "lr": 1e-3},
        {"optimizer": "adadelta", "lr": 1.0},
        {"nesterov": False},
        {"momentum": 0.0},
        {"schedule": "onecycle"},
        {"schedule": "cosine"},
        {"schedule": "linear"},
        {"warmup_epochs": 0.5},  # linear warm-up before the constant rate
        {"batch_size": 64},  # linear lr scaling: a different batch and lr
        {"scale_lr": False},  # same batch, lr not scaled by 32/256
        {"flip": True},
        {"translate": 2},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_each_option_changes_the_weights(data, tmp_path, baseline, overrides):
    assert _differ(baseline, _weights(_train(data, tmp_path, "run", **overrides)))


def test_step_decay_changes_the_second_epoch(data, tmp_path):
    lrs: dict[str, list[float]] = {"constant": [], "step": []}
    runs = {}
    for schedule in lrs:
        hooks = Hooks(on_step=[lambda state, info, s=schedule: lrs[s].append(info["lr"])])
        cfg = TrainConfig.from_dict({**TINY, "epochs": 2, "schedule": schedule, "step_gamma": 0.1})
        runs[schedule] = _weights(fit(cfg, tmp_path / schedule, data=data, hooks=hooks))
    half = len(lrs["step"]) // 2
    assert lrs["step"][:half] == lrs["constant"][:half]  # epoch 1: the same rate
    assert lrs["step"][half:] == pytest.approx([0.1 * lr for lr in lrs["constant"][half:]])
    assert _differ(runs["constant"], runs["step"])


def test_channels_last_trains_in_nhwc(data, tmp_path):
    formats: dict[bool, set[bool]] = {True: set(), False: set()}
    for flag in formats:

        def look(state, info, flag=flag):
            # the widest conv weight: for a (C_out, 1, 3, 3) kernel both layouts are the same
            weight = max((p for p in state.model.parameters() if p.ndim == 4), key=lambda p: p.shape[1])
            formats[flag].add(weight.is_contiguous(memory_format=torch.channels_last))

        _train(data, tmp_path, f"cl{flag}", hooks=Hooks(on_step=[look]), channels_last=flag)
    assert formats == {True: {True}, False: {False}}


def test_no_decay_on_biases_and_norms_changes_training(data, tmp_path):
    with_groups = _weights(_train(data, tmp_path, "a", weight_decay=0.5, no_decay_bias_norm=True))
    without = _weights(_train(data, tmp_path, "b", weight_decay=0.5, no_decay_bias_norm=False))
    assert _differ(with_groups, without)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    groups = param_groups(model, weight_decay=0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [p.ndim for p in groups[0]["params"]] == [4, 2]  # conv and linear weights only


def test_label_smoothing_loss_value():
    logits, target, eps = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0]), 0.3
    logp = F.log_softmax(logits, 1)
    expected = (1 - eps) * -logp[0, 0] + eps * -logp.mean()
    torch.testing.assert_close(task_loss("classification", logits, target, eps), expected)


def test_ema_weights_differ_from_raw_and_are_saved(data, tmp_path):
    result = _train(data, tmp_path, "ema", ema_decay=0.9)
    raw, ema = result.state.model.state_dict(), result.state.ema.module.state_dict()
    assert _differ(raw, {k: ema[k] for k in raw})
    assert result.metrics["weights"] == "ema"
    from cnnlab.train.checkpoint import load_run

    loaded = load_run(result.run_dir).model.state_dict()
    assert all(torch.equal(loaded[k], ema[k].cpu()) for k in loaded)


def test_ema_warmup_follows_the_tensorflow_schedule_and_resumes_from_the_saved_count():
    from cnnlab.train.tricks import make_ema

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema, plain = make_ema(model, 0.99), make_ema(model, 0.99, warmup=False)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(12):  # update 0 copies; update t >= 1 uses decay min(0.99, (1 + t) / (10 + t))
        with torch.no_grad():
            model[0].weight.add_(torch.randn_like(model[0].weight))
        model.train()(torch.randn(4, 3))  # moves the BN running stats and num_batches_tracked
        ema.update_parameters(model)
        plain.update_parameters(model)
        d = 0.0 if t == 0 else min(0.99, (1 + t) / (10 + t))
        for k, v in model.state_dict().items():
            expected[k] = v.clone() if not v.is_floating_point() else d * expected[k] + (1 - d) * v
    got = ema.module.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v)
    assert int(got["1.num_batches_tracked"]) == 12  # the model's count, not an average of counts
    w = model[0].weight
    assert (ema.module[0].weight - w).abs().max() < (plain.module[0].weight - w).abs().max()  # warm-up tracks w
    resumed = make_ema(model, 0.99)
    resumed.load_state_dict(ema.state_dict())  # a restored run continues at update 12, not from a copy
    resumed.update_parameters(model)
    d = 13 / 22  # update 12; a fresh EMA would have copied w
    torch.testing.assert_close(resumed.module[0].weight, d * got["0.weight"] + (1 - d) * w.detach())


def test_zero_gamma_starts_residual_blocks_as_identity(data, tmp_path):
    from cnnlab.models import create_model
    from cnnlab.train.tricks import zero_gamma

    model = create_model("fastnet", widths=(4, 8, 8, 16), residual=True)
    assert zero_gamma(model) == 1
    assert torch.count_nonzero(model.features[-1].conv2[1].weight) == 0
    kw = {"model_kwargs": {"widths": [4, 8, 8, 16], "residual": True}}
    plain = _weights(_train(data, tmp_path, "a", **kw))
    zeroed = _weights(_train(data, tmp_path, "b", zero_gamma=True, **kw))
    assert _differ(plain, zeroed)
    with pytest.raises(ValueError, match="has no residual block"):
        _train(data, tmp_path, "c", zero_gamma=True)


def test_flip_tta_averages_the_mirrored_prediction():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    x = torch.randn(2, 1, 5, 5)
    expected = (model(x) + model(x.flip(-1))) / 2
    torch.testing.assert_close(predict_logits(model, x, tta_flip=True), expected)
    assert not torch.allclose(predict_logits(model, x, tta_flip=False), expected)


def test_tta_changes_the_evaluation(data, tmp_path):
    plain = _train(data, tmp_path, "a").metrics["test_loss"]
    tta = _train(data, tmp_path, "b", tta_flip=True).metrics["test_loss"]
    assert plain != tta


def test_nan_loss_stops_with_step_and_lr_and_keeps_last_checkpoint(data, tmp_path):
    # Epoch 1 trains normally; step decay with gamma 1e36 makes epoch 2's learning rate overflow.
    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(epoch 2\) with learning rate [0-9.]+e\+3[34]"):
        _train(data, tmp_path, "nan", epochs=2, schedule="step", step_gamma=1e36, lr=0.05)
    from cnnlab.train.checkpoint import load_run

    kept = load_run(tmp_path / "nan")
    assert kept.meta["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in kept.model.state_dict().values())


def test_schedules():
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 10, 10) == 0.0
    assert math.isclose(lr_factor("cosine", 5, 10), 0.5)
    assert [lr_factor("linear", s, 4, warmup_steps=2) for s in range(4)] == [0.5, 1.0, 1.0, 0.5]
    assert math.isclose(lr_factor("onecycle", 0, 100), 0.1 + 0.9 / 25) and lr_factor("onecycle", 24, 100) == 1.0
    assert lr_factor("onecycle", 100, 100) == 0.0
    assert lr_factor("step", 35, 100, steps_per_epoch=10, step_gamma=0.5) == 0.125


def _torch_lrs(make, total: int) -> list[float]:
    """The lr torch's scheduler ``make(optimizer)`` sets before each of ``total`` steps (peak 1)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched, lrs = make(opt), []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_and_decay_equal_torch_schedulers(schedule):
    total, warm = 50, 7
    lrs = torch.optim.lr_scheduler

    def make(opt):
        decay = (lrs.CosineAnnealingLR(opt, T_max=total - warm) if schedule == "cosine"
                 else lrs.LinearLR(opt, 1.0, 0.0, total_iters=total - warm))  # fmt: skip
        ramp = lrs.LinearLR(opt, start_factor=1 / warm, total_iters=warm - 1)
        return lrs.SequentialLR(opt, [ramp, decay], milestones=[warm])

    ours = [lr_factor(schedule, s, total, warmup_steps=warm) for s in range(total)]
    assert ours == pytest.approx(_torch_lrs(make, total), abs=1e-12)
    assert ours[0] == 1 / warm and ours[warm - 1] == ours[warm] == 1.0  # step 0, end of warm-up


def test_onecycle_against_torch_onecycle():
    # Pins the default recipe's schedule: 25% up from about 0.1, a two-step peak, then one step behind
    # OneCycleLR's linear decay, so the last step keeps 1 / (total - peak) of the peak instead of 0.
    total, peak = 40, 10
    ours = [lr_factor("onecycle", s, total) for s in range(total)]
    ref = _torch_lrs(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1.0, total_steps=total, pct_start=0.25, anneal_strategy="linear", div_factor=10,
        final_div_factor=1e12, cycle_momentum=False), total)  # fmt: skip
    assert ours[0] == pytest.approx(0.1 + 0.9 / peak) and ref[0] == pytest.approx(0.1)
    assert ours[peak - 1] == ours[peak] == 1.0 == ref[peak - 1]
    assert ours[peak:] == pytest.approx(ref[peak - 1 : -1], abs=1e-9)  # the decay, one step late
    assert ours[-1] == pytest.approx(1 / (total - peak)) and ref[-1] == pytest.approx(0.0, abs=1e-9)


def test_unknown_schedule_is_refused_in_the_warmup_too():
    # 'cosin' returned the warm-up factor 0.1 for steps below warmup_steps and failed only after them
    for step in (0, 50):
        with pytest.raises(ValueError, match=r"schedule must be one of cosine, linear, .*received 'cosin'"):
            lr_factor("cosin", step, 100, warmup_steps=10)


def test_flip_tta_flips_dense_outputs_back_before_averaging():
    # A model that is not mirror-equivariant (its output depends on the column index), so a missing or
    # doubled flip-back would change the average.
    class Dense(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, x * torch.arange(x.shape[-1], dtype=x.dtype)], 1)  # (B, 2, H, W)

    x = torch.randn(2, 1, 3, 4, dtype=torch.float64)
    model = Dense()
    expected = (model(x) + model(x.flip(-1)).flip(-1)) / 2
    torch.testing.assert_close(predict_logits(model, x, tta_flip=True), expected)
    torch.testing.assert_close(predict_logits(model, x, tta_flip=True)[:, 0], x[:, 0])  # channel 0 is equivariant


def test_linear_lr_scaling():
    assert peak_lr(TrainConfig(lr=0.1, batch_size=1024)) == pytest.approx(0.4)
    assert peak_lr(TrainConfig(lr=0.1, batch_size=1024, scale_lr=False)) == 0.1


# /proc/cpuinfo flag lines of real CPUs (abridged to the vector extensions).
ZEN3_AVX2 = "processor : 0\nvendor_id : AuthenticAMD\nflags : fpu sse2 avx avx2 fma bmi2 sha_ni vaes\n"
SKYLAKE_X = "flags : fpu sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl\n"  # bf16 emulated
ZEN4 = "flags : fpu avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags : fpu avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"), [(ZEN3_AVX2, False), (SKYLAKE_X, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True), ("", False)]
)
def test_native_bf16_detection_from_cpu_flags(cpuinfo, native):
    assert cpu_has_native_bf16(cpuinfo) is native


def test_precision_rules():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu, native_bf16=False) == "bf16"  # asked for explicitly: honoured
    # auto: bf16 autocast only where the CPU has native bf16, fp32 on AVX2-only CPUs.
    assert resolve_precision("auto", cpu, native_bf16=False) == "fp32"
    assert resolve_precision("auto", cpu, native_bf16=True) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)


def test_auto_precision_is_what_the_run_uses(data, tmp_path):
    import cnnlab
    from cnnlab.cpuinfo import cpu_model

    result = _train(data, tmp_path, "auto", precision="auto")
    assert result.metrics["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    # what the timing was measured on and with
    assert result.metrics["cpu"] == cpu_model() != "" and result.metrics["cnnlab"] == cnnlab.__version__


def test_cpuinfo_reads_the_first_cpu_of_real_files():
    from cnnlab.cpuinfo import cpu_flags, cpu_model, cpuinfo_field

    two = "processor : 0\nmodel name : AMD EPYC\nflags : fpu avx2\n\nprocessor : 1\nmodel name : other\n"
    assert cpu_model(two) == "AMD EPYC" and cpu_flags(two) == frozenset({"fpu", "avx2"})
    assert cpu_flags("Features : fp asimd bf16\n") == frozenset({"fp", "asimd", "bf16"})  # ARM's key
    assert cpu_flags("") == frozenset() and cpuinfo_field("model name", "flags : x\n") is None
    assert cpu_model("flags : x\n")  # no model name line: platform's answer, never empty
    import doctest

    import cnnlab.cpuinfo

    assert doctest.testmod(cnnlab.cpuinfo).failed == 0


def test_bf16_autocast_changes_training(data, tmp_path, baseline):
    assert _differ(baseline, _weights(_train(data, tmp_path, "bf16", precision="bf16")))


def test_config_rejects_unknown_keys_with_suggestions():
    with pytest.raises(ValueError, match=r"unknown training setting 'epoch'\. Did you mean epochs"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adamw, adadelta; received"):
        TrainConfig(optimizer="adam")
    for bad in (0.0, 1.0):  # one rule, one message (1.0 used to say "[0.0, 1.0)", which allows 0)
        with pytest.raises(ValueError, match=rf"val_fraction must lie in \(0, 1\).*received val_fraction={bad}"):
            TrainConfig(val_fraction=bad)
    cfg = resolve_recipe("default", {"epochs": 2}, ["flip=true", "lr=0.3", 'model_kwargs={"widths": [8, 8, 8, 8]}'])
    assert (cfg.epochs, cfg.flip, cfg.lr, cfg.model_kwargs) == (2, True, 0.3, {"widths": [8, 8, 8, 8]})
    with pytest.raises(ValueError, match="--recipe must be one of"):
        resolve_recipe("lng")


def test_segmentation_metrics_by_hand():
    # 2 classes, 4 pixels: truth [0, 0, 1, 1], prediction [0, 1, 1, 1].
    stats = new_stats("segmentation", 2)
    logits = torch.tensor([[5.0, 0], [0, 5], [0, 5], [0, 5]]).T.reshape(1, 2, 2, 2)
    update_stats(stats, "segmentation", logits, torch.tensor([[[0, 0], [1, 1]]]))
    out = summarize(stats, "segmentation", ["bg", "fg"])
    assert out["pixel_accuracy"] == 0.75
    assert out["iou"] == {"bg": 0.5, "fg": 2 / 3}  # 1/2 and 2/3
    assert out["mean_iou"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_device_is_chosen_automatically():
    from cnnlab.train.tricks import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' asks for CUDA, but this torch build sees no GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a gradient scaler needs a CUDA device")
def test_fp16_with_grad_scaler_changes_training_on_cuda(data, tmp_path):
    fp32 = _weights(_train(data, tmp_path, "fp32", device="cuda", channels_last=False))
    result = _train(data, tmp_path, "fp16", device="cuda", channels_last=False, precision="fp16")
    assert result.state.scaler is not None and result.metrics["precision"] == "fp16"
    assert _differ(fp32, _weights(result))


_FAULTS_SCRIPT = """
import resource, sys, torch, torch.nn.functional as F
from cnnlab.models import create_model
from cnnlab.train.tricks import reuse_freed_memory
torch.manual_seed(0)
torch.set_num_threads(1)
ok = reuse_freed_memory() if sys.argv[1] == "tuned" else True
net = create_model("fastnet").to(memory_format=torch.channels_last)
opt = torch.optim.SGD(net.parameters(), lr=0.01)
x, y = torch.randn(128, 1, 28, 28).to(memory_format=torch.channels_last), torch.randint(0, 10, (128,))
def steps(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
steps(3)
print(ok, steps(5))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_reuse_freed_memory_stops_most_page_faults_of_training_steps() -> None:
    def faults(mode: str) -> int:
        run = [sys.executable, "-c", _FAULTS_SCRIPT, mode]
        ok, count = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120).stdout.split()
        assert ok == "True"
        return int(count)

    # A FastNet step's activations and gradients are megabytes; glibc's default hands some back to the
    # kernel at every free. 14 runs of 5 steps each way: 7,500-24,000 faults by default, 0-1,700 tuned;
    # but one default run in a fresh-clone CI had only 272 (glibc's adaptive mmap threshold), so the
    # medians of 5 alternating runs are compared, not single runs.
    plain, tuned = [], []
    for _ in range(5):
        plain.append(faults("plain"))
        tuned.append(faults("tuned"))
    assert statistics.median(plain) >= 2000, (plain, tuned)
    assert statistics.median(tuned) * 2 < statistics.median(plain), (plain, tuned)
