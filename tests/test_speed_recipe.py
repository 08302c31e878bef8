"""The speed recipes: GPU-recipe selection (CUDA availability injected), and that every recipe the
default can resolve to is a valid config whose model builds for the datasets it is meant for."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import ImageDataset
from cnnlab.models import create_model
from cnnlab.train.config import TrainConfig
from cnnlab.train.gpu import GPU_DATASETS, fit_resident, resident, select_recipe
from cnnlab.train.recipes import RECIPES, resolve_recipe
from cnnlab.train.setup import RunData


@pytest.mark.parametrize(
    ("name", "data", "cuda", "expected"),
    [
        ("default", "fashion-mnist", True, "gpu"),
        ("default", "cifar10", True, "gpu"),
        ("default", "fashion-mnist", False, "default"),
        ("default", "cifar10", False, "default"),
        ("default", "mnist", True, "default"),  # not a dataset the GPU recipe was tuned for
        ("default", "cifar100", True, "default"),
        ("long", "fashion-mnist", True, "long"),  # only the default switches
        ("quick", "cifar10", True, "quick"),
    ],
)
def test_select_recipe(name: str, data: str, cuda: bool, expected: str) -> None:
    assert select_recipe(name, data, cuda_available=cuda) == expected


def test_default_resolves_to_gpu_recipe_when_cuda_is_present() -> None:
    cfg = resolve_recipe("default", cuda_available=True)
    assert cfg.recipe == "gpu"
    assert (cfg.device, cfg.channels_last, cfg.precision) == ("cuda", True, "auto")
    assert cfg.tta_flip and cfg.flip and cfg.ema_decay > 0
    cifar = resolve_recipe("default", {"data": "cifar10"}, cuda_available=True)
    assert cifar.recipe == "gpu" and cifar.data == "cifar10"
    assert resolve_recipe("default", assignments=["lr=0.1"], cuda_available=True).lr == 0.1  # --set still wins


def test_default_stays_on_cpu_without_cuda_or_when_asked() -> None:
    expected = TrainConfig(recipe="default", flip=True, tta_flip=True, ema_decay=0.99, whiten=True)
    assert resolve_recipe("default", cuda_available=False) == expected
    on_gpu_machine = resolve_recipe("default", {"device": "cpu"}, cuda_available=True)
    assert on_gpu_machine.recipe == "default" and on_gpu_machine.device == "cpu"
    # On this machine the choice follows torch: the GPU recipe only where CUDA really is.
    assert (resolve_recipe().recipe == "gpu") == torch.cuda.is_available()


@pytest.mark.parametrize("name", ["default", "long", "gpu"])
def test_speed_recipes_are_valid_and_hold_out_validation(name: str) -> None:
    cfg = resolve_recipe(name, cuda_available=name == "gpu")
    assert cfg.recipe == name and cfg.val_fraction > 0  # decisions can only read a validation split
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round-trips through config.json
    datasets = {"fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)} if name == "gpu" else {"f": (1, 28, 28)}
    for shape in datasets.values():
        model = create_model(cfg.model, num_classes=10, in_chans=shape[0], **cfg.model_kwargs).eval()
        with torch.no_grad():
            assert model(torch.zeros(2, *shape)).shape == (2, 10)
    assert set(GPU_DATASETS) == {"fashion-mnist", "cifar10"}


@pytest.mark.parametrize(
    ("data", "flips"), [("fashion-mnist", True), ("cifar10", True), ("mnist", False), ("rot-mnist", False)]
)
def test_flips_only_where_a_mirror_keeps_the_label(data: str, flips: bool) -> None:
    cfg = resolve_recipe("default", {"data": data}, cuda_available=False)
    assert (cfg.flip, cfg.tta_flip) == (flips, flips)
    assert not resolve_recipe("default", assignments=["flip=false"], cuda_available=False).flip  # the user wins


def test_unknown_recipe_lists_close_names() -> None:
    with pytest.raises(ValueError, match=r"--recipe must be one of .*received 'lon'.*Did you mean long"):
        resolve_recipe("lon", cuda_available=False)
    assert "gpu" in RECIPES


def _tiny_run_data() -> RunData:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> ImageDataset:
        labels = torch.randint(0, 2, (n,), generator=g)
        images = (labels.view(n, 1, 1, 1) * 200 + torch.randint(0, 50, (n, 1, 12, 12), generator=g)).to(torch.uint8)
        return ImageDataset(images, labels, ["dark", "bright"], "toy")

    return RunData(split(64), split(16), split(16), "classification", ["dark", "bright"], (0.5,), (0.4,))


def test_resident_moves_every_split_and_keeps_the_contents() -> None:
    data = _tiny_run_data()
    moved = resident(data, "cpu")
    for a, b in ((data.train, moved.train), (data.val, moved.val), (data.test, moved.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert (moved.mean, moved.std, moved.classes) == (data.mean, data.std, data.classes)


def test_fit_resident_trains_on_cpu(tmp_path: object) -> None:
    cfg = TrainConfig(
        model_kwargs={"widths": [4, 8, 8, 16]}, limit_train=600, limit_test=200, epochs=1, batch_size=64,
        progress="none", device="cpu", precision="fp32", threads=1,
    )  # fmt: skip
    result = fit_resident(cfg, str(tmp_path))
    assert result.metrics["epochs"] == 1 and 0.0 <= result.metrics["test_accuracy"] <= 1.0


def test_quick_recipe_learns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The smoke-test recipe must train, not diverge (batch 256 with FastNet's head unscaled measured 15%)."""
    from cnnlab.train.loop import fit

    cfg = resolve_recipe("quick", {"progress": "none", "threads": 1}, [])
    result = fit(cfg, tmp_path / "quick")
    assert result.metrics["test_accuracy"] > 0.7  # chance is 0.1; measured 0.82


def test_default_recipe_learns_on_a_tiny_budget(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """30 steps of the default recipe (its full learning rate within 7 steps) must learn, not diverge.

    With FastNet's head unscaled (logit_scale=1) the train loss climbed from 3.8 to 22 within 6 steps;
    the epochs averaged 10.3, 2.58, 2.18 and the test accuracy ended at 25%. The default
    logit_scale=0.25 measured 1.82, 1.09, 0.95 and 79.5%.
    """
    from cnnlab.train.loop import fit

    over = {"epochs": 3, "limit_train": 3000, "limit_test": 1000, "progress": "none", "threads": 1}
    result = fit(resolve_recipe("default", over, cuda_available=False), tmp_path / "tiny")
    assert result.metrics["steps"] == 30  # 2,700 training images after the validation split, batch 256
    assert max(h["train_loss"] for h in result.metrics["history"]) < 2.3  # ln(10): chance level
    assert result.metrics["test_accuracy"] > 0.6  # chance is 0.1


def test_fastnet_logit_scale_multiplies_the_logits() -> None:
    from cnnlab.models.fastnet import FastNet

    torch.manual_seed(0)
    scaled = FastNet(widths=(4, 8, 8, 16)).eval()
    plain = FastNet(widths=(4, 8, 8, 16), logit_scale=1.0).eval()
    plain.load_state_dict(scaled.state_dict())
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(scaled(x), plain(x) * 0.25)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="logit_scale must be a finite number > 0"):
            FastNet(logit_scale=bad)


def test_compile_on_cpu_without_a_cxx_compiler_is_one_paragraph(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # It failed in the first step with Inductor's raw InvalidCxxCompiler traceback, after loading the data.
    from cnnlab.cli.main import main

    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    assert main(["train", "--compile", "--recipe", "quick", "--out", str(tmp_path / "run")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--compile on a CPU needs a C++ compiler" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
