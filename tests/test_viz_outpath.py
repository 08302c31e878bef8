"""Where pictures and reports go: a bad ``--out`` or ``--frames-dir`` is one paragraph, before any work.

A folder, a path under a regular file, an unwritable place and a suffix of another format each name
the option, the path, the reason and a fix; nothing is written (no stray temporary file either).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli.main import main
from cnnlab.viz.outpath import check_out_dir, check_out_file


def _run(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, " ".join(capsys.readouterr().err.split())


def _commands(tmp_path: Path) -> dict[str, list[object]]:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "metrics.json").write_text("{}")
    return {
        "edges": ["viz", "edges", "fashion-mnist:0"],
        "rf": ["viz", "rf", "lenet5", "--layer", "features.0", "--image", "fashion-mnist:0"],
        "animate": ["viz", "animate", "conv"],
        "report": ["report", run],
    }


@pytest.mark.parametrize("command", ["edges", "rf", "animate", "report"])
def test_out_is_a_folder(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run([*_commands(tmp_path)[command], "--out", tmp_path], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"--out '{tmp_path}' is a folder; --out takes a file name. Use e.g. --out {tmp_path}/" in err
    assert not list(tmp_path.glob(".*.tmp"))  # the report left no temporary file


@pytest.mark.parametrize("command", ["edges", "rf", "animate", "report"])
def test_out_under_a_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "notes.txt"
    note.write_text("a file")
    suffix = {"animate": ".gif", "report": ".html"}.get(command, ".png")
    code, err = _run([*_commands(tmp_path)[command], "--out", note / f"x{suffix}"], capsys)
    assert code == 2
    assert f"--out '{note}/x{suffix}' lies under '{note}', which is a file, not a folder" in err
    assert f"e.g. --out {tmp_path}/x{suffix}" in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, which refuses new files")
def test_out_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run([*_commands(tmp_path)["edges"], "--out", "/proc/x.png"], capsys)
    assert code == 2 and "--out '/proc/x.png' cannot be written: creating a file in '/proc' failed" in err
    code, err = _run(["viz", "animate", "conv", "--frames-dir", "/proc/frames"], capsys)
    assert code == 2 and "--frames-dir '/proc/frames' cannot be written" in err


@pytest.mark.parametrize(
    ("command", "out", "wording"),
    [
        ("edges", "out.txt", "--out 'out.txt' must end in .png (the file is written in that format); received "
         "the suffix '.txt'. Use --out out.png."),
        ("animate", "x.png", "--out 'x.png' must end in .gif"),
        ("report", "r.txt", "--out 'r.txt' must end in .html or .htm"),
        ("edges", "noext", "received no suffix. Use --out noext.png."),
    ],
)  # fmt: skip
def test_out_with_another_format(
    command: str,
    out: str,
    wording: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _run([*_commands(tmp_path)[command], "--out", out], capsys)
    assert code == 2 and wording in err
    assert not (tmp_path / out).exists()


def test_frames_dir_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = _run(["viz", "animate", "conv", "--frames-dir", afile, "--out", tmp_path / "a.gif"], capsys)
    assert code == 2
    assert f"--frames-dir '{afile}' is a file; --frames-dir takes a folder for the frame_NNNN.png files" in err
    assert not (tmp_path / "a.gif").exists()  # checked before anything was drawn


def test_checks_create_nothing(tmp_path: Path) -> None:
    assert check_out_file(tmp_path / "new" / "deeper" / "k.png") == tmp_path / "new" / "deeper" / "k.png"
    assert check_out_dir(tmp_path / "frames") == tmp_path / "frames"
    assert list(tmp_path.iterdir()) == []  # only probed, with a temporary file that is gone again
    assert check_out_file(tmp_path / "K.PNG").name == "K.PNG"  # suffixes match without case


def test_default_output_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"the default output '.*' \(no --out given\) is a folder"):
        check_out_file(tmp_path, given=False)


def test_failed_report_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    from cnnlab.viz.report import write_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    target = tmp_path / "taken"
    target.mkdir()  # the library is called directly, without the command's check
    with pytest.raises(OSError):
        write_report(run, out=target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "taken"]
