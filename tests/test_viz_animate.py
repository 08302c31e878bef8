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


@pytest.mark.parametrize(
    ("args", "wording"),
    [
        (["conv", "--input", "0"],
         "--input must be an integer >= 1; received 0. Use --input 1 or more, e.g. --input 5."),
        (["conv", "--padding", "-1"], "--padding must be an integer >= 0; received -1. Use --padding 0 or more"),
        # the pooling rule used to say 'received p=2, k=2', not the options, and no fix
        (["pool", "--kernel", "2", "--padding", "2"],
         "--padding must be at most half of --kernel for pooling (PyTorch's rule: no window may lie wholly in the "
         "padding); received --padding 2 with --kernel 2. Use --padding 1 or less, or --kernel 4 or more."),
        (["transposed", "--stride", "2", "--output-padding", "2"],
         "--output-padding must be smaller than --stride or --dilation; received --output-padding 2 with --stride 2, "
         "--dilation 1. Use --output-padding 1 or less, or a larger --stride."),
        (["transposed", "--output-padding", "1"],
         "received --output-padding 1 with --stride 1, --dilation 1. Use --output-padding 0, or a larger --stride."),
        (["conv", "--output-padding", "1"],
         "--output-padding applies to transposed convolutions only; received --output-padding 1 for conv. Drop "
         "--output-padding, or animate transposed."),
        (["conv", "--input", "159", "--padding", "1"],
         "the padded input would be 161 cells wide (--input 159 + 2*--padding 1); animations are drawn up to 160. "
         "Use a smaller --input or --padding"),
        # the zero-stuffed input of a transposed conv grows with the stride, which the message did not say
        (["transposed", "--input", "50", "--stride", "4"],
         "the zero-inserted, padded input would be 201 cells wide ((--input 50 - 1)*--stride 4 + 1 + "
         "2*(--dilation 1*(--kernel 3 - 1) - --padding 0) + --output-padding 0); animations are drawn up to 160. "
         "Use a smaller --input or --stride"),
    ],
)  # fmt: skip
def test_mistakes_name_the_options_and_the_fix(
    args: list[str], wording: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run([*args, "--out", tmp_path / "x.gif"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert wording in err, err


@pytest.mark.parametrize(
    ("args", "wording"),
    [
        (["transposed", "--input", "5", "--stride", "100000000"], "would be 400000005 cells wide"),
        (["transposed", "--input", "5", "--stride", "30000"], "would be 120005 cells wide"),
        (["transposed", "--dilation", "100000000"], "would be 400000005 cells wide"),
        (["conv", "--input", "100000000"], "--input 100000000 is wider than the 160 cells animations are drawn up to"),
        # the padding crops the zero-inserted grid to 1 cell, but the input itself is 100,000,000 wide
        (["transposed", "--input", "100000000", "--kernel", "1", "--padding", "49999999"],
         "--input 100000000 is wider"),
        (["pool", "--kernel", "4", "--padding", "2", "--input", "159"], "would be 163 cells wide"),
        (["pool", "--input", "20000"], "--input 20000 is wider"),
        (["conv", "--padding", "100000000"], "would be 200000005 cells wide"),
    ],
)
def test_huge_numbers_are_refused_before_any_array_is_made(
    args: list[str], wording: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # these used to end in numpy's MemoryError traceback ('Unable to allocate 1.11 EiB'), or to fill the
    # machine's memory for minutes where the array did fit
    code, out, err = _run([*args, "--out", tmp_path / "x.gif"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert wording in err and "animations are drawn up to" in err, err




@pytest.mark.parametrize(("kind", "title_lines"), [("conv", 1), ("transposed", 2)])
def test_the_kernel_weights_are_drawn_so_outputs_can_be_checked(tmp_path: Path, kind: str, title_lines: int) -> None:
    # before, the frames showed the input and the output but not the weights: no output value could be
    # checked by hand. The kernel (flipped for transposed) now sits between them, in the tap colour.
    from PIL import Image

    from cnnlab.viz.animate import conv_animation

    anim = conv_animation(kind, 3, 3, 2 if kind == "transposed" else 1, frames_dir=tmp_path / "frames")
    m, o, cell, gap = anim.grid.shape[0], anim.output.shape[0], 30, 40
    top = 8 + 14 * title_lines
    assert anim.frame_size[0] == 10 + m * cell + gap + 3 * cell + gap + o * cell + 10
    kernel_x = 10 + m * cell + gap
    with Image.open(anim.frame_paths[0]) as im:
        rgb = im.convert("RGB")
        for r in range(3):
            for c in range(3):
                assert rgb.getpixel((kernel_x + c * cell + 25, top + r * cell + 25)) == (255, 165, 60)
        assert rgb.getpixel((kernel_x + 3 * cell + gap // 2, top + 15)) == (255, 255, 255)  # the gap after it


def test_pooling_has_no_kernel_panel(tmp_path: Path) -> None:
    from cnnlab.viz.animate import conv_animation

    anim = conv_animation("pool", 5, 3, 2, 1, frames_dir=tmp_path / "frames")
    m, o = anim.grid.shape[0], anim.output.shape[0]
    assert anim.frame_size == (10 + m * 30 + 40 + o * 30 + 10, 22 + max(m, o) * 30 + 10)
