"""``cnnlab inspect`` and ``cnnlab lint`` run in-process: every TARGET kind, every format, the JSON contract
of DESIGN.md, exit codes and one-paragraph errors."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import cnnlab.models
from cnnlab.analysis import analyze
from cnnlab.cli.main import main
from cnnlab.errors import AnalysisError
from cnnlab.models import create_model

ROOT = Path(__file__).resolve().parents[1]

# DESIGN.md's contract: these keys must be present (extra keys are allowed)
TOP_KEYS = {"model", "input_shape", "totals", "layers", "warnings"}
TOTAL_KEYS = {"params", "trainable_params", "macs", "flops", "activation_bytes"}
LAYER_KEYS = {"name", "type", "output_shape", "params", "macs", "rf"}
RF_KEYS = {"size", "jump", "start"}
WARNING_KEYS = {"rule", "layer", "message"}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _check_contract(doc: dict[str, Any], ndim: int) -> None:
    assert set(doc) >= TOP_KEYS
    assert set(doc["totals"]) >= TOTAL_KEYS
    assert "MAC = one multiply-add" in doc["convention"] and "conv" in doc["counted_ops"]
    for layer in doc["layers"]:
        assert set(layer) >= LAYER_KEYS, layer["name"]
        assert all(isinstance(v, int) for v in layer["output_shape"])
        if layer["rf"] is not None:
            assert set(layer["rf"]) >= RF_KEYS
            assert all(len(layer["rf"][k]) == ndim for k in RF_KEYS), layer["name"]
    for w in doc["warnings"]:
        assert set(w) >= WARNING_KEYS
    t, rows = doc["totals"], doc["layers"]
    for key in ("params", "trainable_params", "macs", "activation_bytes"):
        assert t[key] == sum(r.get(key, 0) for r in rows), key
    assert t["flops"] == 2 * t["macs"]


def test_registered_name_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "inspect", "lenet5", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    _check_contract(doc, ndim=2)
    assert doc["model"] == "lenet5" and doc["input_shape"] == [1, 32, 32]
    assert doc["totals"]["params"] == sum(p.numel() for p in create_model("lenet5").parameters()) == 61_706
    conv1 = doc["layers"][1]
    assert (conv1["name"], conv1["output_shape"], conv1["macs"]) == ("features.0", [1, 6, 28, 28], 117_600)
    assert conv1["connections"] == 122_304  # LeCun 1998's count, biases included
    assert conv1["rf"] == {"size": [5, 5], "size_min": [5, 5], "jump": [1, 1], "start": [2, 2]}


def test_text_shows_macs_and_connections(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "inspect", "lenet5")
    assert code == 0
    conv1 = next(line for line in out.splitlines() if line.strip().startswith("features.0 "))
    assert "117,600" in conv1 and "122,304" in conv1
    assert "'connections' = MACs + one bias add per output" in out  # the output says what the column is
    assert "After an upsample" in out


def _csv_rows(text: str) -> list[dict[str, str]]:
    body = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    return list(csv.DictReader(io.StringIO(body)))


def _md_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in lines[1:]]


def _text_totals(text: str) -> list[int]:
    # rich's table: the row starting with "total", numbers with thousands separators
    line = next(line for line in text.splitlines() if line.startswith("total"))
    return [int(v.replace(",", "")) for v in line.split()[1:]]


@pytest.mark.parametrize("depth", [None, "0", "1", "2"])
def test_same_totals_in_every_format_and_depth(capsys: pytest.CaptureFixture[str], depth: str | None) -> None:
    extra = ["--depth", depth] if depth is not None else []
    outputs = {}
    for fmt in ("text", "md", "csv", "json"):
        code, out, _ = _run(capsys, "inspect", "resnet20", "--format", fmt, *(extra if fmt != "json" else []))
        assert code == 0
        outputs[fmt] = out
    t = json.loads(outputs["json"])["totals"]
    expected = [t["params"], t["macs"], t["connections"], t["activation_bytes"]]
    rows = _csv_rows(outputs["csv"])
    cols = ("params", "macs", "connections", "activation_bytes")
    assert [int(rows[-1][c]) for c in cols] == expected
    assert [sum(int(r[c]) for r in rows[:-1]) for c in cols] == expected  # totals are column sums
    md = _md_rows(outputs["md"])
    assert [int(v.replace(",", "")) for v in md[-1][3:7]] == expected
    assert [sum(int(r[i].replace(",", "")) for r in md[:-1]) for i in range(3, 7)] == expected
    assert _text_totals(outputs["text"]) == expected
    names = [r["layer"] for r in rows[:-1]]
    if depth == "0":
        assert "layer1" in names and not any(n.startswith("layer1.") for n in names)
    if depth == "1":
        assert "layer1.0" in names and not any(n.startswith("layer1.0.") for n in names)
    if depth is None:
        assert "layer1.0.conv1" in names


FACTORY = '''
import torch.nn as nn

input_size = (3, 20, 20)


def build():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 4, 3))


def dead_taps():
    # a 5x5 kernel over a 1x1 map: 24 of its 25 taps only ever read padding
    return nn.Sequential(nn.MaxPool2d(20), nn.Conv2d(3, 3, 5, padding=2))


def untraceable():
    return Branchy()


def not_a_module():
    return 3


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 7)

    def forward(self, x):
        y = self.conv(x)
        return y if y.sum() > 0 else -y  # data-dependent: torch.fx cannot trace it
'''


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "mynet.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def test_python_factory_target(capsys: pytest.CaptureFixture[str], factory_file: Path) -> None:
    code, out, _ = _run(capsys, "inspect", f"{factory_file}:build", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    _check_contract(doc, ndim=2)
    assert doc["input_shape"] == [3, 20, 20]  # the file's declared input_size
    assert doc["layers"][-1]["output_shape"] == [1, 4, 8, 8]
    code, out, _ = _run(capsys, "inspect", f"{factory_file}:build", "--input", "3,32,32", "--format", "json")
    assert code == 0 and json.loads(out)["layers"][-1]["output_shape"] == [1, 4, 14, 14]


def test_untraceable_factory_says_which_path(capsys: pytest.CaptureFixture[str], factory_file: Path) -> None:
    code, out, _ = _run(capsys, "inspect", f"{factory_file}:untraceable", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["capture"] == "hooks"
    assert any(w["rule"] == "capture" and "torch.fx could not trace" in w["message"] for w in doc["warnings"])
    code, _, err = _run(capsys, "inspect", f"{factory_file}:untraceable", "--input", "3,5,5")
    assert code == 2
    assert "layer 'conv' (Conv2d) fails on input shape(s) (1, 3, 5, 5)" in err
    assert "Traceback" not in err


def test_factory_errors(capsys: pytest.CaptureFixture[str], factory_file: Path) -> None:
    code, _, err = _run(capsys, "inspect", f"{factory_file}:nope")
    assert code == 2 and "has no callable 'nope'" in err and "build" in err
    code, _, err = _run(capsys, "inspect", f"{factory_file}:not_a_module")
    assert code == 2 and "returned int, not an nn.Module" in err
    code, _, err = _run(capsys, "inspect", str(factory_file))
    assert code == 2 and ":build_model" in err
    code, _, err = _run(capsys, "inspect", str(factory_file.with_name("missing.py")) + ":build")
    assert code == 2 and "does not exist" in " ".join(err.split())


def _example_specs() -> list[Path]:
    folder = ROOT / "examples" / "specs"
    return sorted(p for p in folder.glob("*") if p.suffix in (".toml", ".yaml", ".yml", ".json"))


def test_spec_file_target(capsys: pytest.CaptureFixture[str]) -> None:
    specs = _example_specs()
    assert {p.suffix for p in specs} >= {".toml", ".yaml"}, "examples/specs/ holds the documented spec examples"
    for spec in specs:
        model = cnnlab.models.from_spec(spec)
        code, out, err = _run(capsys, "inspect", str(spec), "--format", "json")
        assert code == 0, err  # each example declares its input size
        doc = json.loads(out)
        _check_contract(doc, ndim=2)
        assert doc["model"] == spec.stem
        shape = tuple(doc["input_shape"])
        assert doc["totals"]["params"] == sum(p.numel() for p in model.parameters()), spec.name
        assert doc["totals"]["macs"] == analyze(model, shape, lint=False).totals.macs
        with torch.no_grad():
            real = model.eval()(torch.randn(1, *shape))
        assert doc["layers"][-1]["output_shape"] == list(real.shape), spec.name
    lenet = json.loads(_run(capsys, "inspect", str(ROOT / "examples/specs/lenet.toml"), "--format", "json")[1])
    assert lenet["input_shape"] == [1, 32, 32] and lenet["totals"]["params"] == 61_706


def test_bad_spec_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({"input": [1, 8, 8], "layers": [{"conv": 4, "kernel": 9}]}))
    code, _, err = _run(capsys, "inspect", str(spec))
    assert code == 2 and err.startswith("error: spec layers[0]") and "Traceback" not in err
    code, _, err = _run(capsys, "inspect", str(tmp_path / "missing.toml"))
    assert code == 2 and "the spec file does not exist" in " ".join(err.split())


def test_unknown_name_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "inspect", "resnet5")
    assert code == 2 and out == ""
    assert err.startswith("error: model name 'resnet5' is not registered") and "resnet50" in err


def test_bad_input_size_names_layer_and_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "inspect", "vgg16", "--input", "3,16,16")
    assert code == 2
    text = " ".join(err.split())
    assert "layer 'features.30' (MaxPool2d) fails on input shape(s) (1, 512, 1, 1)" in text
    assert "Traceback" not in err
    code, _, err = _run(capsys, "inspect", "lenet5", "--input", "3,32,32")
    assert code == 2
    assert "expected input[1, 3, 32, 32] to have 1 channels, but got 3 channels" in " ".join(err.split())
    code, _, err = _run(capsys, "inspect", "lenet5", "--input", "1,a,32")
    assert code == 2 and "input shape must be integers C,H,W" in err


def test_lint_exit_codes(capsys: pytest.CaptureFixture[str], factory_file: Path) -> None:
    code, out, _ = _run(capsys, "lint", f"{factory_file}:dead_taps")
    assert code == 1
    assert "[error] map-smaller-than-kernel at 1" in out and "why:" in out
    code, out, _ = _run(capsys, "lint", f"{factory_file}:dead_taps", "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert {"rule": "map-smaller-than-kernel", "level": "error", "layer": "1"}.items() <= doc["warnings"][0].items()
    code, out, _ = _run(capsys, "lint", f"{factory_file}:build")
    assert code == 0 and "[error]" not in out
    code, _, err = _run(capsys, "lint", "nosuchmodel")
    assert code == 2 and "not registered" in err


def test_depth_with_json_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "inspect", "lenet5", "--format", "json", "--depth", "1")
    assert code == 2 and out == "" and "--depth folds the table" in err


BROKEN = {
    "syntax.py": ("def build(:\n", "syntax.py failed with SyntaxError: invalid syntax (syntax.py, line 1)"),
    "imports.py": ("import no_such_module_xyz\n", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    "needs.py": ("import torch.nn as nn\ndef build(width):\n    return nn.Conv2d(3, width, 3)\n",
                 "calling build() failed with TypeError"),
    "raises.py": ("def build():\n    raise RuntimeError('no weights here')\n",
                  "calling build() failed with RuntimeError: no weights here"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_factory_file_is_one_paragraph(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    # These used to end in the user's raw traceback (SyntaxError, ModuleNotFoundError, TypeError, ...).
    source, expected = BROKEN[name]
    (tmp_path / name).write_text(source)
    for command in ("inspect", "lint"):
        code, out, err = _run(capsys, command, f"{tmp_path / name}:build", "--input", "3,8,8")
        text = " ".join(err.split())
        assert code == 2 and out == "" and "Traceback" not in err, err
        assert expected in text and "CNNLAB_DEBUG=1" in text
        # only a factory that wants arguments is told about arguments (one that raised was told too)
        assert ("give every parameter a default" in text) == (name == "needs.py")


def test_a_file_that_is_not_a_spec_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 'spec.txt' used to be looked up as a model name ("is not registered. Did you mean: segnet").
    (tmp_path / "spec.txt").write_text("layers: []\n")
    code, _, err = _run(capsys, "inspect", str(tmp_path / "spec.txt"))
    assert code == 2 and "is a file, but not one cnnlab reads as a model" in " ".join(err.split())
    upper = tmp_path / "LENET.TOML"  # suffixes are matched without case, as load_spec does
    upper.write_text((ROOT / "examples/specs/lenet.toml").read_text())
    code, out, err = _run(capsys, "inspect", str(upper), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["totals"]["params"] == 61_706


def test_input_with_the_wrong_number_of_axes(capsys: pytest.CaptureFixture[str]) -> None:
    # lenet5 --input 32,32 used to run conv2d unbatched and fail later in 'fc6' (Linear).
    code, _, err = _run(capsys, "inspect", "lenet5", "--input", "32,32")
    text = " ".join(err.split())
    assert code == 2 and "must have 3 numbers (C,H,W), like its declared size 1,32,32; received '32,32'" in text
    code, _, err = _run(capsys, "inspect", "lenet5", "--input", "x")
    assert code == 2 and "received 'x'" in err  # it echoed '()'


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    # `cnnlab inspect resnet50 | head -1` used to print a BrokenPipeError traceback. The reader closes
    # before anything is written: reading a line first let all 30 kB fit the pipe buffer, so it never broke.
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "inspect", "resnet50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the table is written (the import alone takes a second)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 1) and "Traceback" not in err and "BrokenPipe" not in err, err


def test_input_with_the_batch_axis_is_told_to_drop_it(capsys: pytest.CaptureFixture[str]) -> None:
    # --input 1,1,32,32 was told "Give the channels too", although it held one number too many.
    code, _, err = _run(capsys, "inspect", "lenet5", "--input", "1,1,32,32")
    text = " ".join(err.split())
    assert code == 2 and "without the batch axis: drop the leading 1, --input 1,32,32." in text
    assert "Give the channels too" not in text
    code, _, err = _run(capsys, "inspect", "lenet5", "--input", "2,1,32,32")
    text = " ".join(err.split())
    assert code == 2 and "Give C,H,W only (one sample, no batch axis), e.g. --input 1,32,32." in text


def test_batch_axis_hint_only_when_it_would_work() -> None:
    # analyze(resnet-like, (1, 32, 32)) on a 3-channel model suggested "try (32, 32)", which fails too.
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
    with pytest.raises(AnalysisError, match="to have 3 channels, but got 1") as info:
        analyze(conv, (1, 32, 32))
    assert "batch axis" not in str(info.value)
    with pytest.raises(AnalysisError, match=r"looks like it includes one, try \(3, 8, 8\)"):
        analyze(conv, (1, 3, 8, 8))


TWO_INPUTS = '''
import torch.nn as nn


class Pair(nn.Module):
    def forward(self, x, mask):
        return x * mask


def build():
    return Pair()


class Lookup(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = {}

    def forward(self, x):
        return self.heads["cls"](x)


def lookup():
    return Lookup()
'''


def test_forward_with_two_inputs_and_a_key_error_say_what_happened(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # forward(x, mask) said "layer 'mask' (mask) fails on input shape(s) no tensors: Expected positional
    # argument for parameter mask"; a KeyError in forward said only "in code between modules: 'cls'."
    path = tmp_path / "pair.py"
    path.write_text(TWO_INPUTS)
    code, _, err = _run(capsys, "inspect", f"{path}:build", "--input", "3,8,8")
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err
    assert "the model's forward(x, mask) takes 2 inputs, but cnnlab analyses a model on one tensor" in text
    assert "received no value for 'mask'" in text and "Give the other parameters defaults" in text
    code, _, err = _run(capsys, "inspect", f"{path}:lookup", "--input", "3,8,8")
    assert code == 2 and "in code between modules: KeyError: 'cls'." in " ".join(err.split())
