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

__all__ = [
    "conv2d_backward",
    "conv2d_forward",
    "conv_transpose2d_backward",
    "conv_transpose2d_forward",
    "explain_conv",
    "explain_pool",
    "explain_transposed",
    "parse_matrix",
]
