"""The explain traces: seeds' worked examples, agreement with the NumPy reference and with torch,
matrix parsing and its error wording."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.reference.conv import conv2d_forward, conv_transpose2d_forward
from cnnlab.reference.explain import explain_conv, explain_pool, explain_transposed, parse_matrix

SEED_INPUT = "1 2 3 4 5; 6 7 8 2 3; 2 5 9 9 5; 4 8 8 2 1"  # seed 003
SEED_KERNEL = "1 1 1; 2 1 2; 3 2 1"


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))


def _json_roundtrip(d: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in d.items() if k != "lines"}, allow_nan=False))


# ---- seeds' worked examples ---------------------------------------------------------------------


def test_seed_first_output_66_and_full_output_match_torch() -> None:
    d = explain_conv(SEED_INPUT, SEED_KERNEL)
    x, k = parse_matrix(SEED_INPUT), parse_matrix(SEED_KERNEL)
    expected = F.conv2d(_t(x)[None, None], _t(k)[None, None])[0, 0].numpy()
    assert d["steps"][0]["sum"] == 66
    assert d["steps"][0]["window"] == [[1, 2, 3], [6, 7, 8], [2, 5, 9]]
    assert d["steps"][0]["products"] == [[1, 2, 3], [12, 7, 16], [6, 10, 9]]
    assert d["output"] == expected.astype(int).tolist()
    assert np.array_equal(np.array(d["output"]), expected)
    assert len(d["steps"]) == 6
    assert "= floor((4 + 2*0 - 1*(3-1) - 1) / 1) + 1 = 2" in d["formula"]
    assert "= floor((5 + 2*0 - 1*(3-1) - 1) / 1) + 1 = 3" in d["formula"]
    text = "\n".join(d["lines"])
    assert "sum = 1 + 2 + 3 + 12 + 7 + 16 + 6 + 10 + 9 = 66" in text
    assert "cross-correlation" in text
    assert _json_roundtrip(d)["output"] == d["output"]


def test_seed_004_image_and_kernel() -> None:
    image = "1 1 1 0 0; 0 1 1 1 0; 0 0 1 1 1; 0 0 1 1 0; 0 1 1 0 0"
    d = explain_conv(image, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert d["output"] == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]


def test_seed_004_max_pool_3x3_stride_1() -> None:
    x = "3 3 2 1 0; 0 0 1 3 1; 3 1 2 2 3; 2 0 0 2 2; 2 0 0 0 1"
    d = explain_pool(x, 3, stride=1)
    assert d["output"] == [[3, 3, 3], [3, 3, 3], [3, 2, 3]]
    expected, idx = F.max_pool2d(_t(parse_matrix(x))[None, None], 3, 1, return_indices=True)
    assert d["output"] == expected[0, 0].numpy().astype(int).tolist()
    assert [s["index"] for s in d["steps"]] == idx.flatten().tolist()


def test_seed_001_vertical_edge_detector() -> None:
    image = np.array([[10, 10, 10, 0, 0, 0]] * 6)  # bright left, dark right
    d = explain_conv(image, [[1, 0, -1], [1, 0, -1], [1, 0, -1]])
    assert d["output"] == [[0, 30, 30, 0]] * 4  # the edge shows up in the two middle columns


@pytest.mark.parametrize(
    ("i", "p", "i_transposed", "zero_inserted", "eq_padding"),
    [(5, 0, 2, 3, 2), (5, 1, 3, 5, 1)],  # Dumoulin & Visin, figures 4.5 and 4.6 (k=3, s=2)
)
def test_dumoulin_visin_transposed_examples(
    i: int, p: int, i_transposed: int, zero_inserted: int, eq_padding: int
) -> None:
    # the forward convolution maps i -> i_transposed; its transpose maps back to i
    assert (i + 2 * p - 3) // 2 + 1 == i_transposed
    rng = np.random.default_rng(i + p)
    x = rng.integers(-3, 4, (i_transposed, i_transposed)).astype(float)
    w = rng.integers(-2, 3, (3, 3)).astype(float)
    d = explain_transposed(x, w, stride=2, padding=p)
    eq = d["equivalent"]
    assert eq["zero_inserted_size"] == [zero_inserted, zero_inserted]
    assert eq["padding"] == [eq_padding, eq_padding]
    assert d["output_shape"] == [i, i]
    expected = F.conv_transpose2d(_t(x)[None, None], _t(w)[None, None], stride=2, padding=p)[0, 0]
    np.testing.assert_allclose(np.array(d["output"], dtype=float), expected.numpy(), atol=1e-9)
    assert eq["kernel_flipped"] == w[::-1, ::-1].astype(int).tolist()


# ---- traces agree with the reference forward and with torch --------------------------------------

CONV_GRID = list(
    itertools.product(
        [(1, 5, 6), (2, 6, 5)],  # input (C, H, W)
        [1, 2],  # filters
        [1, 2],  # stride
        [0, 1],  # padding
        [1, 2],  # dilation
        ["zeros", "reflect", "replicate"],
        [False, True],  # flip
    )
)


@pytest.mark.parametrize(("shape", "f", "s", "p", "d", "mode", "flip"), CONV_GRID)
def test_conv_trace_matches_reference_and_torch(
    shape: tuple[int, int, int], f: int, s: int, p: int, d: int, mode: str, flip: bool
) -> None:
    rng = np.random.default_rng(len(CONV_GRID))
    x = rng.integers(-4, 5, shape).astype(float)
    w = rng.integers(-3, 4, (f, shape[0], 3, 2)).astype(float)
    bias = rng.integers(-2, 3, f).astype(float)
    out = explain_conv(
        x, w, stride=s, padding=p, dilation=d, padding_mode=mode, flip=flip, bias=bias.tolist()
    )
    w_used = w[..., ::-1, ::-1] if flip else w
    ref, _ = conv2d_forward(x[None], w_used, bias, stride=s, padding=p, dilation=d, padding_mode=mode)
    got = np.array(out["output"], dtype=float).reshape(ref.shape)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    torch_mode = mode  # same names as nn.Conv2d
    conv = torch.nn.Conv2d(shape[0], f, (3, 2), s, p, d, padding_mode=torch_mode).double()
    with torch.no_grad():
        conv.weight.copy_(_t(w_used.copy()))
        conv.bias.copy_(_t(bias))
        np.testing.assert_allclose(got, conv(_t(x)[None]).numpy(), atol=1e-9)
    assert len(out["steps"]) == ref.size
    assert np.array(out["padded_input"]).shape[-2:] == (shape[1] + 2 * p, shape[2] + 2 * p)
    step = out["steps"][-1]
    assert step["value"] == step["sum"] + step["bias"]


@pytest.mark.parametrize(
    ("mode", "k", "s", "p", "ceil"),
    [
        (m, k, s, p, c)
        for m in ("max", "avg", "sum")
        for k, s, p in [(2, None, 0), (3, 2, 1), (3, 1, 1), (2, 3, 1)]
        for c in (False, True)
    ],
)
def test_pool_trace_matches_torch(mode: str, k: int, s: int | None, p: int, ceil: bool) -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(-9, 10, (2, 6, 7)).astype(float)
    d = explain_pool(x, k, stride=s, padding=p, mode=mode, ceil_mode=ceil)
    xt = _t(x)[None]
    if mode == "max":
        expected, idx = F.max_pool2d(xt, k, s, p, ceil_mode=ceil, return_indices=True)
        assert [st["index"] for st in d["steps"]] == idx.flatten().tolist()
    else:
        expected = F.avg_pool2d(xt, k, s, p, ceil_mode=ceil, divisor_override=1 if mode == "sum" else None)
    np.testing.assert_allclose(np.array(d["output"], dtype=float), expected[0].numpy(), atol=1e-12)
    _json_roundtrip(d)  # pad cells are null, never NaN


@pytest.mark.parametrize(
    ("c", "f", "s", "p", "op", "dil"),
    [(1, 1, 2, 0, 1, 1), (1, 1, 3, 1, 2, 1), (2, 1, 2, 1, 0, 1), (2, 3, 1, 0, 0, 2), (1, 2, 2, 3, 1, 2)],
)
def test_transposed_trace_matches_reference_and_torch(
    c: int, f: int, s: int, p: int, op: int, dil: int
) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, (c, 3, 4)).astype(float)
    w = rng.integers(-2, 3, (c, f, 3, 3)).astype(float)  # PyTorch's ConvTranspose layout
    d = explain_transposed(x, w, stride=s, padding=p, output_padding=op, dilation=dil)
    ref, _ = conv_transpose2d_forward(x[None], w, stride=s, padding=p, output_padding=op, dilation=dil)
    expected = F.conv_transpose2d(_t(x)[None], _t(w), stride=s, padding=p, output_padding=op, dilation=dil)
    got = np.array(d["output"], dtype=float).reshape(ref.shape)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-9)
    assert "flip the kernel" in "\n".join(d["lines"])


def test_flip_explains_textbook_convolution() -> None:
    d = explain_conv(SEED_INPUT, SEED_KERNEL, flip=True)
    assert d["kernel"] == [[1, 2, 3], [2, 1, 2], [1, 1, 1]]
    text = "\n".join(d["lines"])
    assert "rotated by 180 degrees" in text and "cross-correlation" in text
    assert d["output"] != explain_conv(SEED_INPUT, SEED_KERNEL)["output"]


def test_multichannel_stacked_filter_sums_channels() -> None:
    d = explain_conv("1 2; 3 4 | 5 6; 7 8", "1 0; 0 1 | 0 1; 1 0")
    assert d["output"] == [[5 + 13]]
    assert d["steps"][0]["channel_sums"] == [5, 13]
    assert "sum over channels = 5 + 13 = 18" in "\n".join(d["lines"])


def test_float_values_stay_floats() -> None:
    d = explain_pool("1 2; 3 5", 2, mode="avg")
    assert d["output"] == [[2.75]]


# ---- parse_matrix ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("1 2 3; 4 5 6", (2, 3)),
        ("1,2,3\n4,5,6\n", (2, 3)),
        ("1, 2; 3, 4;", (2, 2)),
        ("1 2; 3 4 | 5 6; 7 8 | 0 0; 0 0", (3, 2, 2)),
        ("1 2; 3 4 | 5 6; 7 8 || 1 1; 1 1 | 2 2; 2 2", (2, 2, 2, 2)),
        ("[[1, 0, 1], [0, 1, 0]]", (2, 3)),
        ("-1.5 2e1; 0 .5", (2, 2)),
    ],
)
def test_parse_matrix_formats(text: str, shape: tuple[int, ...]) -> None:
    assert parse_matrix(text).shape == shape


def test_parse_matrix_values() -> None:
    assert parse_matrix("1 2 3; 4 5 6").tolist() == [[1, 2, 3], [4, 5, 6]]
    assert parse_matrix("-1.5 2e1; 0 .5").tolist() == [[-1.5, 20.0], [0.0, 0.5]]


def test_parse_matrix_rejects_ragged_rows_naming_row_and_counts() -> None:
    with pytest.raises(ValueError, match=r"not rectangular: row 2 has 2 numbers but row 1 has 3") as err:
        parse_matrix("1 2 3; 4 5")
    assert "'1 2 3; 4 5'" in str(err.value) and "'1 2 3; 4 5 6'" in str(err.value)
    assert "\n" not in str(err.value)


def test_parse_matrix_rejects_non_numbers() -> None:
    with pytest.raises(ValueError, match=r"'x' in row 2, column 1 is not a finite number"):
        parse_matrix("1 2; x 3")
    with pytest.raises(ValueError, match=r"row 1, column 2 of channel 2"):
        parse_matrix("1 2 | 3 nan")


def test_parse_matrix_rejects_mismatched_channels_and_empty_text() -> None:
    with pytest.raises(ValueError, match=r"same height and width, but found 1x2, 2x2"):
        parse_matrix("1 2; 3 4 | 5 6")
    with pytest.raises(ValueError, match=r"holds no numbers"):
        parse_matrix(" ; ")
    with pytest.raises(ValueError, match=r"not a rectangular list of numbers"):
        parse_matrix("[[1, 2], [3]]")


def test_explain_errors_name_the_matrix_argument() -> None:
    with pytest.raises(ValueError, match=r"row 2 has 2 numbers but row 1 has 3.*Received input='1 2 3; 4 5'"):
        explain_conv("1 2 3; 4 5", "1")
    with pytest.raises(
        ValueError, match=r"'y' in row 1, column 2 is not a finite number.*Received kernel='1 y'"
    ):
        explain_transposed("1 2; 3 4", "1 y")


def test_explain_rejects_bad_settings_with_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"conv output would be 0 along H: input 2, kernel 3"):
        explain_conv("1 2; 3 4", "1 1 1; 1 1 1; 1 1 1")
    with pytest.raises(ValueError, match=r"stride must be >= 1 along each axis; received stride=-1"):
        explain_conv(SEED_INPUT, SEED_KERNEL, stride=-1)
    with pytest.raises(ValueError, match=r"does not fit an input with 2 channels"):
        explain_conv("1 2; 3 4 | 5 6; 7 8", "1 | 2 | 3")
    with pytest.raises(ValueError, match=r"mode must be 'max', 'avg' or 'sum'; received 'min'"):
        explain_pool(SEED_INPUT, 2, mode="min")
    with pytest.raises(ValueError, match=r"padding_mode must be one of zeros, reflect, replicate"):
        explain_conv(SEED_INPUT, SEED_KERNEL, padding=1, padding_mode="circular")


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_same_padding_keeps_the_size_and_matches_torch() -> None:
    x = parse_matrix(SEED_INPUT)
    d = explain_conv(x, "1 2; 3 4", padding="same")
    assert d["output_shape"] == [4, 5]
    expected = F.conv2d(_t(x)[None, None], _t(parse_matrix("1 2; 3 4"))[None, None], padding="same")
    np.testing.assert_allclose(np.array(d["output"], dtype=float), expected[0, 0].numpy())
    assert "(0+1)" in d["formula"]  # an even kernel pads one more on the bottom/right


def test_pool_formula_explains_the_ceil_mode_drop() -> None:
    d = explain_pool("1 2 3; 4 5 6; 7 8 9", 2, stride=2, padding=1, mode="avg", ceil_mode=True)
    assert "= 3, but the last window would start in the right padding" in d["formula"]
    assert "PyTorch drops it: 2" in d["formula"]
    assert d["steps"][0]["divisor"] == 4  # zero padding counts (count_include_pad=True)
    assert d["steps"][0]["window"] == [[0, 0], [0, 1]]
    assert d["output"] == [[0.25, 1.25], [2.75, 7]]


def test_flip_matches_numpy_convolve_on_a_row() -> None:
    # np.convolve is the textbook (flipped) convolution; on one row the 2-D trace must agree with it
    x, w = np.array([[3.0, 1, 4, 1, 5, 9, 2]]), np.array([[2.0, 7, 1]])
    d = explain_conv(x, w, flip=True)
    assert d["output"] == [np.convolve(x[0], w[0], mode="valid").astype(int).tolist()]
    assert d["output"] != explain_conv(x, w)["output"]


def test_a_dilated_step_names_the_taps_it_reads() -> None:
    # "window rows 0-2" while a dilation-2 kernel reads rows 0 and 2 only
    x = np.arange(25.0).reshape(5, 5)
    lines = explain_conv(x, np.eye(2), dilation=2)["lines"]
    assert "output[0, 1]: taps at rows 0, 2, cols 1, 3 of the padded input" in lines
    plain = explain_conv(x, np.eye(2))["lines"]
    assert "output[0, 1]: window rows 0-1, cols 1-2 of the padded input" in plain


def test_the_flip_note_states_stride_and_dilation() -> None:
    # the formula x[i+m, j+n] holds for stride 1 and dilation 1 only
    notes = " ".join(explain_conv(np.ones((4, 4)), np.eye(2), stride=2, flip=True)["lines"])
    assert "out[i, j] = sum x[i*s+m*d, j*s+n*d] * w[kh-1-m, kw-1-n] (x padded, s the stride, d the dilation)" in notes
