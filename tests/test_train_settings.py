"""``cnnlab train`` settings that were accepted and then ignored, recorded wrongly or failed with a raw error:
non-finite or out-of-range ``--set`` values, ``--set recipe=`` and ``--resume --recipe``, ``model_kwargs``
that the builder does not take or that ``--init-from`` cannot apply, ``zero_gamma`` on the ResNets, on a spec
and on a loaded checkpoint, and a model/data size mismatch whose advice named options that train lacks.
Every run is tiny (a synthetic IDX set of 200 images, a 4-8-8-16 FastNet).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _idx_files import write_striped_mnist
from _train_cli import TINY, WIDTHS, isolate, run_train
from cnnlab.train.config import TrainConfig


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_striped_mnist(tmp_path_factory.mktemp("settings") / "data", n_train=200, n_test=50)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate(monkeypatch, tmp_path)


def _train(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str, code: int = 0) -> str:
    return run_train(capsys, data_dir, *TINY, *argv, code=code)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("lr=nan", "TrainConfig.lr must be a finite number; received lr=nan"),  # trained with NaN weights
        ("lr=inf", "TrainConfig.lr must be a finite number; received lr=inf"),
        ("grad_clip=nan", "TrainConfig.grad_clip must be a finite number"),  # silently no clipping
        ("warmup_epochs=nan", "TrainConfig.warmup_epochs must be a finite number"),  # 'cannot convert float NaN'
        ("weight_decay=inf", "TrainConfig.weight_decay must be a finite number"),
        ("limit_test=-5", "TrainConfig.limit_test must be >= 0; received limit_test=-5"),  # used all 10,000
        ("threads=-1", "TrainConfig.threads must be >= 0"),
        ("translate=-1", "TrainConfig.translate must be >= 0"),  # silently no translation
        ("step_epochs=0", "TrainConfig.step_epochs must be >= 1"),  # silently 1
        ("step_gamma=-1", "TrainConfig.step_gamma must be > 0"),  # negative learning rates
        ("momentum=2", r"TrainConfig.momentum must lie in \[0.0, 1.0\); received momentum=2.0"),
        ("device=gpu", "TrainConfig.device must be auto, cpu, cuda or cuda:N"),  # a raw torch RuntimeError
    ],
)
def test_set_values_out_of_range_are_refused_naming_the_field(assignment: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig().with_overrides([assignment])


def test_valid_edge_values_are_accepted() -> None:
    cfg = TrainConfig().with_overrides(["momentum=0", "limit_test=0", "translate=0", "device=cuda:1", "threads=2"])
    assert (cfg.momentum, cfg.limit_test, cfg.device) == (0.0, 0, "cuda:1")


def test_set_recipe_is_refused_as_it_would_not_apply_the_recipe(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """`--set recipe=long` recorded recipe 'long' in config.json and metrics.json, and trained the default's
    settings (EMA 0.99 included)."""
    text = _train(capsys, data_dir, "--set", "recipe=long", "--out", "run", code=2)
    assert "--set recipe=long: the recipe field only records" in text and "--recipe long" in text
    assert not (isolated / "run").exists()


def test_resume_with_another_recipe_is_refused(capsys: pytest.CaptureFixture[str], data_dir: Path,
                                               isolated: Path) -> None:  # fmt: skip
    """`--resume --epochs 2 --recipe long` continued with the run's default recipe without a word."""
    _train(capsys, data_dir, *WIDTHS, "--out", "run")
    run = isolated / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    text = _train(capsys, data_dir, "--resume", "--out", "run", "--epochs", "2", "--recipe", "long", code=2)
    assert "--recipe long with --resume: the run in run was trained with recipe 'default'" in text
    assert "Drop --recipe to continue the run" in text
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert "resuming run after epoch 1" in _train(capsys, data_dir, "--resume", "--out", "run", "--epochs", "2",
                                                  "--recipe", "default")  # fmt: skip


def test_model_kwargs_the_builder_does_not_take_are_one_paragraph(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    """They were a raw TypeError traceback from FastNet.__init__ (or create_model's 'multiple values')."""
    text = _train(capsys, data_dir, "--set", 'model_kwargs={"colour": 1}', code=2)
    assert "model_kwargs={'colour': 1}: model 'fastnet' cannot be built with them" in text
    assert "unexpected keyword argument 'colour'" in text
    text = _train(capsys, data_dir, "--set", 'model_kwargs={"num_classes": 3}', code=2)
    assert "sets num_classes, which cnnlab train takes from the data (here num_classes=10, in_chans=1)" in text


def test_init_from_refuses_settings_it_would_ignore(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """With --init-from, model_kwargs were recorded in config.json but the checkpoint's architecture trained
    (a 4-8-8-16 FastNet recorded as widths 8-8-16-16), and zero_gamma was silently skipped."""
    _train(capsys, data_dir, *WIDTHS, "--out", "src")
    text = _train(capsys, data_dir, "--init-from", "src", "--set", 'model_kwargs={"widths": [8, 8, 16, 16]}',
                  "--out", "kw", code=2)  # fmt: skip
    assert "cannot apply with --init-from" in text and "Drop --set model_kwargs to fine-tune" in text
    text = _train(capsys, data_dir, "--init-from", "src", "--set", "zero_gamma=true", "--out", "zg", code=2)
    assert "zero_gamma=true initialises a fresh model's residual blocks" in text
    assert not (isolated / "kw").exists() and not (isolated / "zg").exists()
    _train(capsys, data_dir, "--init-from", "src", "--out", "tuned")  # the plain fine-tune still works
    assert json.loads((isolated / "tuned" / "config.json").read_text())["model_kwargs"] == {}


def test_zero_gamma_zeroes_the_resnets_last_batch_norms() -> None:
    """zero_gamma=true refused resnet20, the very model its error message suggested."""
    from cnnlab.models import create_model
    from cnnlab.train.tricks import zero_gamma

    model = create_model("resnet20", num_classes=10)
    blocks = [m for m in model.modules() if callable(getattr(m, "last_bn", None))]
    assert zero_gamma(model) == len(blocks) == 9
    assert all(torch.count_nonzero(b.last_bn().weight) == 0 for b in blocks)


def test_zero_gamma_on_a_spec_without_such_blocks_is_refused(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """It was silently ignored for a spec-built model (only registered models were checked)."""
    layers = "[{conv: 4, kernel: 3}, relu, {maxpool: 2}, flatten, {linear: 5}]"
    (isolated / "tiny.yaml").write_text(f"name: tiny\ninput: [1, 28, 28]\nlayers: {layers}\n")
    text = _train(capsys, data_dir, "--model", "tiny.yaml", "--set", "zero_gamma=true", code=2)
    assert "zero_gamma=true, but model 'tiny' has no residual block" in text


def test_zero_gamma_zeroes_a_spec_residual_body_that_ends_in_batch_norm() -> None:
    """A spec's residual blocks had no zero_init_last(), so zero_gamma=true was refused for every spec model."""
    from cnnlab.models import from_spec
    from cnnlab.train.tricks import zero_gamma

    def spec(body: list[object]) -> dict[str, object]:
        return {"input": [4, 6, 6], "layers": [{"residual": {"body": body}, "act": "relu"}]}

    net = from_spec(spec([{"conv": 4, "padding": 1, "bias": False}, "bn", "relu", {"conv": 4, "padding": 1}, "bn"]))
    assert zero_gamma(net) == 1
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(net.eval()(x), torch.relu(x))  # the block starts as relu(shortcut): the identity
    ends_in_conv = from_spec(spec([{"conv": 4, "padding": 1}, "bn", "relu", {"conv": 4, "padding": 1}]))
    assert zero_gamma(ends_in_conv) == 0  # zeroing the inner batch norm would not silence the body


def test_a_size_mismatch_gives_train_options_not_inspects(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """The advice said '--input on the command line' (cnnlab train has none) and, for a spec, to pass
    model_kwargs, which a spec refuses."""
    text = _train(capsys, data_dir, "--model", "lenet5", code=2)
    assert "model 'lenet5' cannot take the 'fashion-mnist' images (1x28x28)" in text
    assert "--input" not in text and "conv1_padding=2" in text
    layers = "[{conv: 4, kernel: 5}, relu, {maxpool: 4}, {conv: 4, kernel: 7}, flatten, {linear: 5}]"
    (isolated / "small.yaml").write_text(f"name: small\ninput: [1, 32, 32]\nlayers: {layers}\n")
    text = _train(capsys, data_dir, "--model", "small.yaml", code=2)
    assert "model 'small' cannot take" in text and "--input" not in text and "model_kwargs" not in text
    assert f"give the spec {isolated / 'small.yaml'} the geometry the data needs" in text


def test_init_from_an_autoencoder_fine_tunes_it_as_one(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """`--init-from AE_RUN` took the task from the labelled data (classification), replaced the decoder's last
    layer by a 10-class 'head' and refused with "model 'conv_autoencoder' returns (1, 10, 28, 28)"."""
    import shutil

    _train(capsys, data_dir, "--model", "conv_autoencoder", "--out", "ae")
    _train(capsys, data_dir, "--init-from", "ae", "--out", "tuned")
    metrics = json.loads((isolated / "tuned" / "metrics.json").read_text())
    assert metrics["task"] == "reconstruction" and metrics["test_mse"] > 0 and metrics["test_accuracy"] is None
    shutil.rmtree(isolated / "ae")  # resuming takes the task from the run's own model.json
    assert "resuming" in _train(capsys, data_dir, "--resume", "--out", "tuned", "--epochs", "2")
    assert json.loads((isolated / "tuned" / "metrics.json").read_text())["task"] == "reconstruction"


def test_init_from_with_other_channels_suggests_data_opts_only_for_folders(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """An RGB checkpoint onto Fashion-MNIST advised --set data_opts='{"grayscale": false}', which the IDX loader
    refuses ("does not take the option(s) grayscale")."""
    from cnnlab.models import from_spec
    from cnnlab.train.checkpoint import save_model

    net = from_spec({"name": "rgb", "input": [3, 28, 28], "layers": [{"conv": 4}, "flatten", {"linear": 10}]})
    save_model(net, {"model": None, "spec": net.spec, "num_classes": 10, "in_chans": 3,
                     "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}, isolated / "src")  # fmt: skip
    text = _train(capsys, data_dir, "--init-from", "src", "--out", "tuned", code=2)
    assert "that model takes 3-channel images but 'fashion-mnist' has 1-channel images" in text
    assert "data_opts" not in text and "Fine-tune it on 3-channel data (--data)" in text
