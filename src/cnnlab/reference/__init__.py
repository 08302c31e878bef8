"""NumPy reference operators with hand-written backward passes, and step-by-step explanations.

Every operator is a pair ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache) -> grads``
computing exactly what the matching PyTorch function computes (float64, no autograd), so the tests
can hold them against ``torch.autograd``. :mod:`cnnlab.reference.explain` traces convolution,
pooling and transposed convolution window by window for people.

    >>> import numpy as np
    >>> out, cache = conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    >>> out.shape
    (1, 1, 2, 2)
"""

from cnnlab.reference.conv import (
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
)
from cnnlab.reference.explain import explain_conv, explain_pool, explain_transposed, parse_matrix
from cnnlab.reference.loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from cnnlab.reference.ops import linear_backward, linear_forward, relu_backward, relu_forward
from cnnlab.reference.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    max_unpool2d_backward,
    max_unpool2d_forward,
    sum_pool2d_backward,
    sum_pool2d_forward,
)

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "conv2d_backward",
    "conv2d_forward",
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "explain_conv",
    "explain_pool",
    "explain_transposed",
    "linear_backward",
    "linear_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "max_unpool2d_backward",
    "max_unpool2d_forward",
    "parse_matrix",
    "relu_backward",
    "relu_forward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "sum_pool2d_backward",
    "sum_pool2d_forward",
]
