"""``viz animate``: frames folders hold one animation, names and summaries carry every number, errors name flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli.main import main


def _run(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["viz", "animate", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_frames_of_an_earlier_animation_are_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "notes.txt").write_text("mine")  # not a frame: kept
    code, _, _ = _run(["transposed", "--input", "3", "--stride", "2", "--frames-dir", frames, "--out",
                       tmp_path / "t.gif"], capsys)  # fmt: skip
    assert code == 0 and len(list(frames.glob("frame_*.png"))) == 49
    code, text, _ = _run(["conv", "--frames-dir", frames, "--out", tmp_path / "c.gif"], capsys)
    assert code == 0
    assert sorted(p.name for p in frames.iterdir()) == [f"frame_{i:04d}.png" for i in range(9)] + ["notes.txt"]
    assert f"note: removed 49 frame_NNNN.png files of an earlier animation from {frames}" in text


def test_output_padding_is_in_the_name_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["transposed", "--input", "3", "--stride", "2"]
    code, text, _ = _run([*base, "--output-padding", "1"], capsys)
    assert code == 0 and "dilation 1, output padding 1 -> output 8x8" in text
    assert "wrote transposed-n3-k3-s2-p0-d1-op1.gif" in text
    code, text, _ = _run(base, capsys)
    assert code == 0 and "output padding 0 -> output 7x7" in text
    assert sorted(p.name for p in tmp_path.glob("*.gif")) == [
        "transposed-n3-k3-s2-p0-d1-op1.gif", "transposed-n3-k3-s2-p0-d1.gif",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "wording"),
    [
        (["conv", "--input", "3", "--kernel", "5"],
         "--input 3 with --padding 0 gives a padded input of 3 cells per side, fewer than the 5 cells the kernel "
         "spans (--kernel 5, --dilation 1), so the conv output would be empty. Use --padding 1 or more"),
        (["pool", "--input", "2", "--kernel", "2", "--dilation", "3"], "the 4 cells the kernel spans"),
        (["transposed", "--input", "1", "--kernel", "1", "--padding", "1"],
         "--padding 1 crops more than the transposed convolution makes: (input-1)*stride - 2*padding + "
         "dilation*(kernel-1) + output_padding + 1 = -1 cells per side"),
    ],
)  # fmt: skip
def test_empty_output_names_the_options(
    args: list[str], wording: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run([*args, "--out", tmp_path / "x.gif"], capsys)
    assert code == 2 and wording in err and "along L" not in err
