"""``cnnlab models``: the table, the JSON list, pattern matching and the no-match error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.cli.main import main
from cnnlab.models import list_models, model_info


def test_json_lists_every_model_with_its_declared_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_models()
    vgg16 = next(r for r in rows if r["name"] == "vgg16")
    assert vgg16 == {
        "name": "vgg16", "family": "vgg", "task": "classification", "input_size": [3, 224, 224],
        "num_classes": 1000, "params": 138_357_544, "macs": 15_470_264_320, "rf": 212,
        "description": model_info("vgg16").description,
    }  # fmt: skip


def test_plain_word_matches_anywhere_and_wildcards_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    main(["models", "bn_cifar", "--format", "json"])
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert names == ["vgg11_bn_cifar", "vgg13_bn_cifar", "vgg16_bn_cifar", "vgg19_bn_cifar"]
    main(["models", "resnet5?", "--format", "json"])
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["resnet50", "resnet56"]


def test_text_table_shows_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "2 registered models" in out
    lines = [line for line in out.splitlines() if "lenet5" in line]
    assert len(lines) == 2
    assert "61,706" in lines[0] and "416.5K" in lines[0] and "1x32x32" in lines[0]
    assert "60,850" in lines[1]


def test_no_match_is_a_one_paragraph_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "zzz*"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: PATTERN 'zzz*' matches none of the") and "cnnlab models" in err


def test_module_does_not_import_torch() -> None:
    """``cnnlab --help`` builds every sub-parser; this one must not pull torch in."""
    code = "import sys, cnnlab.cli.cmd_models as m, argparse; m.add_arguments(argparse.ArgumentParser()); "
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
