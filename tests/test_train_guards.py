"""``cnnlab train`` refuses what would lose a run or train something other than asked, in one paragraph:
an ``--out`` that holds a run (unless ``--resume`` or ``--overwrite``), a file or unwritable ``--out``,
``--model`` against ``--init-from``'s or the resumed run's model, ``--freeze features`` on random
features, a damaged ``config.json`` on ``--resume``, and classification data of one class. Folder runs
record absolute paths. Every run is tiny (a synthetic IDX set of 200 images, a 4-8-8-16 FastNet).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _idx_files import write_striped_mnist
from _train_cli import TINY, WIDTHS, isolate, run_train
from cnnlab.cli.main import main
from cnnlab.data import load_dataset
from cnnlab.train.checkpoint import load_run
from cnnlab.train.config import TrainConfig
from cnnlab.train.loop import fit


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_striped_mnist(tmp_path_factory.mktemp("guards") / "data", n_train=200, n_test=50)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate(monkeypatch, tmp_path)


def _train(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str, code: int = 0) -> str:
    return run_train(capsys, data_dir, *TINY, *WIDTHS, *argv, code=code)


def _png_folder(root: Path, classes: tuple[str, ...], per_class: int = 10) -> Path:
    """28x28 grayscale PNGs; class k is a bright band at rows 2k..2k+5 (as in the IDX set)."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 100, size=(28, 28)).astype(np.uint8)
            pixels[2 * k : 2 * k + 6] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_out_holding_a_run_is_refused_and_overwrite_replaces_all_of_it(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """A second `train --out RUN` silently replaced the weights and left the old report.html beside them."""
    _train(capsys, data_dir, "--out", "run")
    run = isolated / "run"
    (run / "report.html").write_text("<p>the old model</p>")
    (run / "viz").mkdir()
    (run / "viz" / "gradcam.png").write_bytes(b"old picture")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    text = _train(capsys, data_dir, "--out", "run", code=2)
    assert text.startswith("error: --out run already holds a fastnet run (test accuracy ")
    assert "Continue it with --resume --out run, choose a new --out, or pass --overwrite to delete it" in text
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing touched

    text = _train(capsys, data_dir, "--out", "run", "--overwrite", "--seed", "1")
    assert "--overwrite: deleted the earlier run's config.json, metrics.json, metrics.jsonl, model.safetensors, " \
           "model.json, train_state.safetensors, report.html, viz/ in run" in text  # fmt: skip
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json", "metrics.jsonl", "model.json",
                                                     "model.safetensors", "train_state.safetensors"]  # fmt: skip
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    assert "overwrite" in _train(capsys, data_dir, "--out", "run", "--overwrite", "--resume", code=2)


def test_fit_refuses_a_used_directory_unless_told(data_dir: Path, isolated: Path) -> None:
    cfg = TrainConfig(data_dir=str(data_dir), model_kwargs={"widths": [4, 8, 8, 16]}, epochs=1, batch_size=32,
                      threads=1, precision="fp32", progress="none")  # fmt: skip
    fit(cfg, isolated / "lib")
    with pytest.raises(ValueError, match=r"already holds a fastnet run .*\(fit\(\): resume=True or overwrite=True\)"):
        fit(cfg, isolated / "lib")
    assert fit(cfg, isolated / "lib", overwrite=True).run_dir == isolated / "lib"
    (isolated / "empty").mkdir()
    assert fit(cfg, isolated / "empty").metrics["epochs"] == 1  # an existing empty folder is fine


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("notes.txt", "the run directory is a file, not a folder."),
        ("notes.txt/run", "the run directory lies under notes.txt, which is a file, so no folder can be made there."),
        ("/proc/cnnlab-test/run", "the run directory "),  # root may write /proc by its mode, but no folder can be made
    ],
)
def test_out_that_cannot_be_a_folder(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path, out: str, reason: str
) -> None:
    """These gave a FileExistsError traceback, or '[Errno 2] No such file or directory' without naming --out."""
    (isolated / "notes.txt").write_text("notes")
    text = _train(capsys, data_dir, "--out", out, code=2)
    assert text.startswith(f"error: --out {out}: {reason}") and "choose another --out" in text


def test_model_against_init_from_is_refused_and_the_source_model_is_recorded(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """`--init-from A_FASTNET_RUN --model lenet5` trained a fastnet recorded as lenet5; without --model,
    config.json said fastnet whatever the checkpoint held."""
    lenet = ["--model", "lenet5", "--set", 'model_kwargs={"conv1_padding": 2}']
    _train(capsys, data_dir, "--out", "lenet", *lenet)
    text = _train(capsys, data_dir, "--out", "tuned", "--init-from", "lenet", "--model", "fastnet", code=2)
    assert text.startswith("error: --model fastnet conflicts with --init-from lenet, a lenet5 checkpoint:")
    assert "Drop --model (or pass --model lenet5)" in text and not (isolated / "tuned").exists()
    # no --model: the checkpoint's; TINY's FastNet widths are dropped (with --init-from they are refused)
    _train(capsys, data_dir, "--out", "tuned", "--init-from", "lenet", "--set", "model_kwargs={}")
    config = json.loads((isolated / "tuned" / "config.json").read_text())
    assert config["model"] == "lenet5" and config["init_from"] == str(isolated / "lenet")  # absolute
    # fit() with TrainConfig's default model fine-tunes the checkpoint's architecture and records it
    # (a refusal here broke fit(TrainConfig(init_from=...)), which names no model)
    cfg = TrainConfig(data_dir=str(data_dir), init_from=str(isolated / "lenet"), progress="none", epochs=1)
    fit(cfg, isolated / "f")
    assert json.loads((isolated / "f" / "config.json").read_text())["model"] == "lenet5"


def test_resume_names_the_option_that_differs_before_loading_anything(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """--resume --data OTHER blamed --init-from; --resume --model OTHER was not named as the cause."""
    _train(capsys, data_dir, "--out", "src")
    _train(capsys, data_dir, "--out", "run", "--init-from", "src")
    text = _train(capsys, data_dir, "--out", "run", "--resume", "--epochs", "2", "--data", "folder:nowhere", code=2)
    assert f"the settings differ from the interrupted run's (--data: 'fashion-mnist' -> 'folder:{isolated}/nowhere')" \
        in text and "--init-from" not in text  # fmt: skip
    text = _train(capsys, data_dir, "--out", "run", "--resume", "--epochs", "2", "--model", "resnet20", code=2)
    assert f"--model resnet20 conflicts with --init-from {isolated}/src, a fastnet checkpoint" in text
    assert "resuming" in _train(capsys, data_dir, "--out", "run", "--resume", "--epochs", "2")


def test_resume_with_a_damaged_config_names_it_and_the_fix_works(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """A damaged config.json gave 'Expecting property name enclosed in double quotes ...' naming no file."""
    _train(capsys, data_dir, "--out", "run")
    (isolated / "run" / "config.json").write_text("{bad")
    text = _train(capsys, data_dir, "--out", "run", "--resume", "--epochs", "2", code=2)
    assert text.startswith("error: --resume: run/config.json, the settings of the run to resume, is damaged: it is "
                           "not valid JSON (Expecting property name")  # fmt: skip
    assert "Delete it and run the same command again" in text
    (isolated / "run" / "config.json").unlink()  # the fix the message gives
    assert "after 2 epochs" in _train(capsys, data_dir, "--out", "run", "--resume", "--epochs", "2")
    assert json.loads((isolated / "run" / "config.json").read_text())["epochs"] == 2


def test_freeze_features_needs_init_from(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    """Without --init-from it trained a head on random features (chance accuracy) without a word."""
    text = _train(capsys, data_dir, "--out", "frozen", "--freeze", "features", code=2)
    assert "--freeze features trains only the head" in text and "Add --init-from RUN" in text
    with pytest.raises(ValueError, match="there is no --init-from to bring trained features"):
        fit(TrainConfig(data_dir=str(data_dir), freeze="features", progress="none"), "frozen")


def test_folder_run_records_absolute_paths_and_says_it_replaced_the_head(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config.json held 'folder:pics' (relative), so bench/report/viz failed from another directory; the head
    swap onto a new class count was silent."""
    _train(capsys, data_dir, "--out", "src")
    _png_folder(isolated / "pics", ("cat", "dog", "emu"))
    text = _train(capsys, data_dir, "--out", "tuned", "--data", "folder:pics", "--init-from", "src",
                  "--freeze", "features", "--set", "val_fraction=0.2")  # fmt: skip
    assert (f"--init-from {isolated}/src: its head predicts 10 classes and the data has 3, so the head was replaced "
            "by a new, randomly initialised 3-class one; with --freeze features only the new head trains (51 "
            "trainable parameters)") in text  # fmt: skip
    meta = load_run(isolated / "tuned").meta
    assert meta["dataset"] == f"folder:{isolated}/pics" and meta["config"]["data"] == meta["dataset"]
    monkeypatch.chdir(isolated / "cache")
    assert load_dataset(meta["dataset"], "test").classes == ["cat", "dog", "emu"]  # from another directory


def test_one_class_and_a_too_small_val_fraction_say_how_to_fix_them(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """One class trained to a meaningless 100%; 'Use a larger val_fraction' did not say how to set it."""
    _png_folder(isolated / "one", ("cat",))
    text = _train(capsys, data_dir, "--out", "one", "--data", "folder:one", code=2)
    assert "classification needs images of at least 2 classes, but the training split has images of only cat" in text
    assert not (isolated / "one-run").exists()
    _png_folder(isolated / "few", ("cat", "dog"), per_class=6)  # 5 train images per class: 10% gives none
    text = _train(capsys, data_dir, "--out", "few", "--data", "folder:few", code=2)
    assert "Use a larger val_fraction or more images. With cnnlab train: --set val_fraction=0.2." in text
    assert "done:" in _train(capsys, data_dir, "--out", "few", "--data", "folder:few", "--set", "val_fraction=0.2")


def test_runs_started_in_the_same_second_get_their_own_default_folders(tmp_path: Path) -> None:
    # Two `cnnlab train` without --out, started together, computed the same runs/<second>-fastnet and
    # both wrote into it: config.json of one beside metrics.json of the other.
    from cnnlab.train.runfiles import RunFiles, default_run_dir

    name = default_run_dir("fastnet", root=tmp_path)  # both processes compute this before either creates it
    first, second = RunFiles(name, claim=True), RunFiles(name, claim=True)
    assert first.dir == name and second.dir == name.with_name(name.name + "-2")
    assert first.dir.is_dir() and second.dir.is_dir()
    assert RunFiles(tmp_path / "chosen", claim=False).dir == tmp_path / "chosen"  # an --out is used as given


def test_a_spec_built_checkpoint_loads_fine_tunes_and_resumes(
    capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path
) -> None:
    """load_run of a spec-built checkpoint called a builder that did not exist ("written by another cnnlab
    version"); fine-tuning from it recorded the model as the string 'None' without its spec."""
    import torch

    from cnnlab.models import from_spec
    from cnnlab.train.checkpoint import save_model

    spec = {"name": "tiny", "input": [1, 28, 28],
            "layers": [{"conv": 4, "kernel": 3}, "relu", {"maxpool": 2}, "flatten", {"linear": 5}]}  # fmt: skip
    net = from_spec(spec)
    save_model(net, {"model": None, "spec": net.spec, "num_classes": 5, "in_chans": 1,
                     "normalization": {"mean": [0.5], "std": [0.25]}}, isolated / "src")  # fmt: skip
    loaded = load_run(isolated / "src")
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), net.eval()(x))
    no_widths = ["--set", "model_kwargs={}"]  # TINY's FastNet widths: refused with --init-from
    _train(capsys, data_dir, "--out", "tuned", "--init-from", "src", *no_widths)  # 10 classes: a new head
    meta = json.loads((isolated / "tuned" / "model.json").read_text())
    assert meta["model"] is None and meta["spec"]["name"] == "tiny" and meta["init_from_num_classes"] == 5
    tuned = load_run(isolated / "tuned")
    assert tuned.model(x).shape == (2, 10)
    assert json.loads((isolated / "tuned" / "metrics.json").read_text())["model"] == "tiny"
    text = _train(capsys, data_dir, "--out", "tuned", "--resume", "--epochs", "2", *no_widths)
    assert "resuming" in text and load_run(isolated / "tuned").model(x).shape == (2, 10)
    assert "training tiny on" in text and "randomly initialised" not in text  # the head is restored, not new


def test_train_takes_a_spec_file_as_model(capsys: pytest.CaptureFixture[str], data_dir: Path, isolated: Path) -> None:
    """DESIGN's `cnnlab train --model NAME|SPEC`: a spec file was looked up as a registered name ("model name
    'net.yaml' is not registered")."""
    import torch

    base = ["train", "--data", "fashion-mnist", "--data-dir", str(data_dir), *TINY]  # no FastNet model_kwargs
    layers = '[{conv: 4, kernel: 3}, relu, {maxpool: 2}, flatten, {linear: 5}]'
    (isolated / "tiny.yaml").write_text(f"name: tiny\ninput: [1, 28, 28]\nlayers: {layers}\n")
    assert main([*base, "--model", "tiny.yaml", "--out", "run"]) == 0, capsys.readouterr().err
    assert "training tiny on" in capsys.readouterr().err
    meta = json.loads((isolated / "run" / "model.json").read_text())
    assert meta["model"] is None and meta["spec"]["name"] == "tiny" and meta["num_classes"] == 10  # head resized
    config = json.loads((isolated / "run" / "config.json").read_text())
    assert config["model"] == str(isolated / "tiny.yaml")  # absolute: --resume works from any directory
    assert json.loads((isolated / "run" / "metrics.json").read_text())["model"] == "tiny"
    assert load_run(isolated / "run").model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    (isolated / "tiny.yaml").unlink()  # the run's model.json keeps the spec: resuming does not need the file
    assert main([*base, "--model", "tiny.yaml", "--out", "run", "--resume", "--epochs", "2"]) == 0
    assert "resuming" in capsys.readouterr().err

    (isolated / "rgb.json").write_text(json.dumps({"input": [3, 28, 28], "layers": [{"conv": 4}, "flatten"]}))
    assert main([*base, "--model", "rgb.json", "--out", "rgb"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "the spec's input has 3 channels, but the training images have 1. Set the spec's `input` to [1, 28" in err
    assert not (isolated / "rgb").exists()
    assert main([*base, "--model", "rgb.json", "--set", 'model_kwargs={"widths": [4]}', "--out", "kw"]) == 2
    assert "a spec file fixes the whole architecture, so it takes no model_kwargs" in capsys.readouterr().err


def test_a_signal_after_an_epochs_last_step_stops_the_run(data_dir: Path, isolated: Path) -> None:
    """Ctrl-C during an epoch's evaluation or checkpoint set the stop request, but nothing read it again: the run
    went on to the test split after the last epoch and exited 0 (test_train_resume's Ctrl-C test failed so, rarely,
    when its signal came late under load)."""
    import os
    import signal

    from cnnlab.errors import TrainingInterrupted
    from cnnlab.train.loop import Hooks

    cfg = TrainConfig(data_dir=str(data_dir), model_kwargs={"widths": [4, 8, 8, 16]}, epochs=2, batch_size=32,
                      threads=1, precision="fp32", progress="none")  # fmt: skip

    def ctrl_c_at_the_last_epoch_end(state: object, record: dict[str, object]) -> None:
        if record["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs at once: after the last epoch's checkpoint

    with pytest.raises(TrainingInterrupted) as stopped:
        fit(cfg, isolated / "run", hooks=Hooks(on_epoch_end=[ctrl_c_at_the_last_epoch_end]))
    assert stopped.value.signum == signal.SIGINT
    assert not (isolated / "run" / "metrics.json").exists()  # stopped before the test split
    assert len((isolated / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    assert fit(cfg, isolated / "run", resume=True).metrics["epochs"] == 2  # resuming scores the test split
