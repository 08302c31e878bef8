"""Exact CNN arithmetic: output sizes, padding, parameters, MACs and receptive fields.

Pure, typed functions with no torch dependency. Every size-like argument is an ``int`` (same on all
axes) or a tuple with one entry per spatial axis (1-D ``L``, 2-D ``H, W``, 3-D ``D, H, W``); results
are tuples. Impossible input raises ``ValueError`` with a message that names the axis and the rule.

>>> from cnnlab.arith import conv_out, conv_params
>>> conv_out((224, 224), 5), conv_params(3, 64, 5)
((220, 220), 4864)
"""

from __future__ import annotations

from cnnlab.arith._norm import axis_names
from cnnlab.arith.params import (
    batchnorm_params,
    bilinear_macs,
    conv_macs,
    conv_params,
    conv_transpose_macs,
    conv_transpose_params,
    linear_macs,
    linear_params,
)
from cnnlab.arith.receptive import RF, rf_conv, rf_conv_transpose, rf_input, rf_upsample
from cnnlab.arith.sizes import (
    conv_out,
    conv_transpose_out,
    effective_kernel,
    keep_size_padding,
    pool_out,
    resolve_padding,
    same_padding,
    unread_border,
)

__all__ = [
    "RF",
    "axis_names",
    "batchnorm_params",
    "bilinear_macs",
    "conv_macs",
    "conv_out",
    "conv_params",
    "conv_transpose_macs",
    "conv_transpose_out",
    "conv_transpose_params",
    "effective_kernel",
    "keep_size_padding",
    "linear_macs",
    "linear_params",
    "pool_out",
    "resolve_padding",
    "rf_conv",
    "rf_conv_transpose",
    "rf_input",
    "rf_upsample",
    "same_padding",
    "unread_border",
]
