"""The seeds' worked numbers, reproduced with cnnlab.arith (seeds in ../shared/seeds/)."""

from __future__ import annotations

import pytest

from cnnlab.arith import (
    RF,
    conv_out,
    conv_params,
    conv_transpose_out,
    effective_kernel,
    keep_size_padding,
    linear_params,
    pool_out,
    rf_conv,
    rf_input,
    same_padding,
)


def test_seed000_feature_map_sizes() -> None:
    # 224x224x3 through 64 5x5 filters: 224-5+1 = 220; padded by 2 (228 wide): 224+2*2-5+1 = 224
    assert conv_out((224, 224), 5) == (220, 220)
    assert conv_out((224, 224), 5, p=2) == (224, 224)
    assert conv_out(228, 5) == (224,)
    assert conv_params(3, 64, 5) == 3 * 5 * 5 * 64 + 64 == 4864


def test_seed000_dilated_kernel() -> None:
    # F = F + (F - 1)(D - 1)
    assert effective_kernel(3, 2) == (5,)
    assert effective_kernel((3, 3), (3, 3)) == (7, 7)


# seed 000's VGG-16 table on CIFAR-10 (32x32): name, n, j, RF
VGG16_TABLE = [
    ("input", 32, 1, 1),
    ("conv1_1", 32, 1, 3), ("conv1_2", 32, 1, 5), ("maxpool", 16, 2, 6),
    ("conv2_1", 16, 2, 10), ("conv2_2", 16, 2, 14), ("maxpool", 8, 4, 16),
    ("conv3_1", 8, 4, 24), ("conv3_2", 8, 4, 32), ("conv3_3", 8, 4, 40), ("maxpool", 4, 8, 44),
    ("conv4_1", 4, 8, 60), ("conv4_2", 4, 8, 76), ("conv4_3", 4, 8, 92), ("maxpool", 2, 16, 100),
    ("conv5_1", 2, 16, 132), ("conv5_2", 2, 16, 164), ("conv5_3", 2, 16, 196), ("maxpool", 1, 32, 212),
    ("adaptivepool", 1, 32, 212), ("linear", 1, 32, 212),
]  # fmt: skip


def test_seed000_vgg16_receptive_field_table_all_21_rows() -> None:
    n, rf = (32, 32), rf_input(2)
    rows = [("input", n[0], rf.jump[0], rf.size[0])]
    for name, *_ in VGG16_TABLE[1:]:
        if name.startswith("conv"):
            n, rf = conv_out(n, 3, 1, 1), rf_conv(rf, 3, 1, 1)
        elif name == "maxpool":
            n, rf = pool_out(n, 2, 2), rf_conv(rf, 2, 2)
        # adaptive pooling of a 1x1 map to 1x1 and the linear layer change nothing here
        rows.append((name, n[0], rf.jump[0], rf.size[0]))
    assert rows == VGG16_TABLE
    assert len(rows) == 21


def test_seed001_same_padding_formulas() -> None:
    # p = (f - 1) / 2 at stride 1, p = (n*s - n + f - s) / 2 in general
    for f in (1, 3, 5, 7):
        assert keep_size_padding(32, f) == ((f - 1) / 2,)
    for n, f, s in [(32, 3, 2), (10, 5, 3), (7, 4, 1)]:
        assert keep_size_padding(n, f, s) == ((n * s - n + f - s) / 2,)
    # and the padding really keeps n when it is whole: (n + 2p - f)/s + 1 = n
    assert conv_out(9, 3, 2, p=5) == (9,)
    assert keep_size_padding(9, 3, 2) == (5.0,)
    # TF 'same' instead aims at ceil(n/s) and splits odd totals left < right
    assert same_padding(6, 4) == ((1, 2),)


def test_seed001_parameter_counts() -> None:
    # (6,6,3) through ten 3x3x3 filters -> (4,4,10); 3*3*3*10 + 10 = 280
    assert conv_out((6, 6), 3) == (4, 4)
    assert conv_out((39, 39), 3) == (37, 37)
    assert conv_params(3, 10, 3) == 280
    # 32x32x3 -> 28x28x6 with f=5: (5*5*3 + 1) * 6 = 456
    assert conv_out((32, 32), 5) == (28, 28)
    assert conv_params(3, 6, 5) == 456


def test_seed001_one_by_one_convolution() -> None:
    # 6x6x32 through five 1x1 filters -> 6x6x5, 32*5 + 5 = 165 parameters
    assert conv_out((6, 6), 1) == (6, 6)
    assert conv_params(32, 5, 1) == 165


def test_seed001_table_rows() -> None:
    # the rows of seed 001's CONV/POOL/FC table that are right (FC4 is checked in test_explain_*)
    assert conv_out((32, 32), 5) == (28, 28) and conv_params(3, 8, 5) == 608
    assert pool_out((28, 28), 2, 2) == (14, 14)
    assert conv_out((14, 14), 5) == (10, 10) and conv_params(8, 16, 5) == 3216
    assert pool_out((10, 10), 2, 2) == (5, 5)
    assert linear_params(5 * 5 * 16, 120) == 48120
    assert linear_params(84, 10) == 850 != linear_params(120, 10) == 1210


def test_seed004_alexnet_shapes() -> None:
    n = (227, 227)
    steps = [
        (lambda n: conv_out(n, 11, 4, 0), (55, 55)),  # CONV1 96 11x11 stride 4
        (lambda n: pool_out(n, 3, 2), (27, 27)),  # MAX POOL1 3x3 stride 2
        (lambda n: conv_out(n, 5, 1, 2), (27, 27)),  # CONV2 256 5x5 pad 2
        (lambda n: pool_out(n, 3, 2), (13, 13)),
        (lambda n: conv_out(n, 3, 1, 1), (13, 13)),  # CONV3
        (lambda n: conv_out(n, 3, 1, 1), (13, 13)),  # CONV4
        (lambda n: conv_out(n, 3, 1, 1), (13, 13)),  # CONV5
        (lambda n: pool_out(n, 3, 2), (6, 6)),  # MAX POOL3
    ]
    for step, want in steps:
        n = step(n)
        assert n == want
    assert conv_params(3, 96, 11) == 34944
    assert linear_params(6 * 6 * 256, 4096) == 37752832


def test_seed004_dumoulin_visin_figures() -> None:
    assert conv_out(4, 3) == (2,)  # figure 2.1
    assert conv_out(5, 4, p=2) == (6,)  # figure 2.2
    assert conv_out(7, 3, d=2) == (3,)  # figure 5.1
    # figures 4.5 / 4.6: transposing the 5x5 -> 2x2 (p=0) and 5x5 -> 3x3 (p=1) convolutions gives 5x5 back
    assert conv_out(5, 3, 2) == (2,) and conv_transpose_out(2, 3, 2) == (5,)
    assert conv_out(5, 3, 2, 1) == (3,) and conv_transpose_out(3, 3, 2, 1) == (5,)
    # the 3x3 stride-1 max pool on 5x5 gives 3x3
    assert pool_out((5, 5), 3, 1) == (3, 3)


def test_dilated_1d_stack_sees_13() -> None:
    # k=3 with dilation 1, 2, 3: RF = 1 + 2*1 + 2*2 + 2*3 = 13
    rf = rf_input(1)
    for d in (1, 2, 3):
        rf = rf_conv(rf, 3, d=d)
    assert rf == RF(size=(13,), jump=(1.0,), start=(6.0,))


def test_factorised_1x7_then_7x1_sees_7x7() -> None:
    rf = rf_conv(rf_conv(rf_input(2), (1, 7), p=(0, 3)), (7, 1), p=(3, 0))
    assert rf.size == (7, 7)
    assert rf.start == (0.0, 0.0)


def test_two_3x3_see_as_far_as_one_5x5() -> None:
    two = rf_conv(rf_conv(rf_input(2), 3), 3)
    one = rf_conv(rf_input(2), 5)
    assert two == one
    c = 64
    assert (
        2 * conv_params(c, c, 3, bias=False) == 2 * 9 * c * c < conv_params(c, c, 5, bias=False) == 25 * c * c
    )


@pytest.mark.parametrize(
    ("n", "k", "s", "want"), [(224, 7, 2, 112), (32, 4, 1, 32), (5, 2, 2, 3), (1, 8, 3, 1), (33, 3, 2, 17)]
)
def test_same_output_is_ceil_n_over_s(n: int, k: int, s: int, want: int) -> None:
    assert conv_out((n, n), k, s, "same") == (want, want)
