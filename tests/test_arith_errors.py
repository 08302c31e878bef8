"""cnnlab.arith's ValueErrors name the argument and axis, state the rule and echo the input."""

from __future__ import annotations

import pytest

from cnnlab import arith


def test_empty_conv_output_message_names_axis_and_rule() -> None:
    with pytest.raises(ValueError) as err:
        arith.conv_out((4, 9), 7, 1, 1)
    assert str(err.value).startswith(
        "conv output would be 0 along H: input 4, kernel 7, padding 1, stride 1 need input + 2*padding "
        ">= kernel = 7, but input + 2*padding = 6. Use a smaller kernel, more padding, or a larger input."
    )
    with pytest.raises(
        ValueError, match=r"along W: input 3, kernel 3, padding \(0, 1\), stride 1, dilation 2"
    ):
        arith.conv_out((9, 3), 3, p=((0, 0), (0, 1)), d=2)
    with pytest.raises(ValueError, match=r">= dilation\*\(kernel-1\)\+1 = 5, .* Use a smaller kernel or dilation,"):
        arith.conv_out((9, 3), 3, p=((0, 0), (0, 1)), d=2)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: arith.conv_out(8, 3, s=0), r"stride must be positive .* received stride=0 along L"),
        (lambda: arith.conv_out((8, 8), 3, s=(1, -1)), r"received stride=-1 along W"),
        (lambda: arith.conv_out((8, 8, 8), 3, d=(1, 0, 1)), r"dilation=0 along H"),
        (lambda: arith.conv_out(8, 3, p=-1), r"padding must be >= 0 .* received \(-1, -1\) along L"),
        (lambda: arith.conv_out((8, 8), (3, 3, 3)), r"kernel has 3 entries but the layer has 2 spatial axes"),
        (lambda: arith.conv_out(8, 3, p="full"), r"received padding='full'"),
        (lambda: arith.conv_out(8, 2.5), r"kernel must be an int or a tuple of 1 ints; received kernel=2.5"),
        (lambda: arith.conv_out(0, 1), r"input size must be positive"),
        (
            lambda: arith.pool_out((8, 8), 3, p=2),
            r"kernel // 2 = 1.*received padding 2 with kernel 3",
        ),
        (lambda: arith.pool_out(2, 5), r"pool output would be 0 along L"),
        (
            lambda: arith.conv_transpose_out(4, 3, s=2, output_padding=2),
            r"output_padding must be >= 0 and smaller than either stride or dilation along L; received "
            r"output_padding=2 with stride=2, dilation=1",
        ),
        (  # it said "picks between the 1 input sizes"
            lambda: arith.conv_transpose_out(4, 3, output_padding=1),
            r"stride=1, dilation=1\. With stride 1 and dilation 1 use output_padding=0: each output size comes "
            r"from one input size",
        ),
        (lambda: arith.conv_transpose_out(2, 1, s=1, p=1), r"transposed conv output would be 0 along L"),
        (lambda: arith.conv_transpose_out(4, 3, p="same"), r"numeric padding only"),
        (
            lambda: arith.conv_params(6, 4, 3, groups=4),
            r"in_channels must be divisible by groups .* received in_channels=6, groups=4",
        ),
        (lambda: arith.conv_params(4, 6, 3, groups=4), r"out_channels must be divisible by groups"),
        (lambda: arith.conv_params(0, 6, 3), r"in_channels must be a positive int; received in_channels=0"),
        (lambda: arith.linear_params(10, -1), r"out_features must be a positive int"),
        (lambda: arith.rf_upsample(arith.rf_input(2), 0), r"scale must be a positive number"),
        (lambda: arith.rf_conv(arith.rf_input(1), 3, s=2, p="same"), r"pass n=<input size>"),
        (lambda: arith.rf_input(0), r"ndim must be a positive int"),
    ],
)
def test_rejections_name_argument_and_rule(call, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


def test_bool_is_not_a_kernel_size() -> None:
    with pytest.raises(ValueError, match="received kernel=True"):
        arith.conv_out(8, True)


def test_n_dimensional_axis_names() -> None:
    assert arith.axis_names(1) == ("L",)
    assert arith.axis_names(3) == ("D", "H", "W")
    with pytest.raises(ValueError, match="along D"):
        arith.conv_out((2, 8, 8), 3)
    # mixed per-axis tuples on a 3-D (video) layer
    assert arith.conv_out((16, 112, 112), (3, 7, 7), (1, 2, 2), (1, 3, 3)) == (16, 56, 56)
    assert arith.rf_conv(arith.rf_input(3), (3, 7, 7), (1, 2, 2), (1, 3, 3)).size == (3, 7, 7)
