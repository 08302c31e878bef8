"""ReLU and the fully connected (linear) layer in NumPy with hand-written backward passes.

Example:
    >>> y, cache = linear_forward(np.ones((2, 3)), np.ones((4, 3)), np.zeros(4))
    >>> y.shape
    (2, 4)
    >>> dx, dw, db = linear_backward(np.ones((2, 4)), cache)
    >>> dx.tolist()
    [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(x, 0); the cache is the mask of positive inputs (PyTorch's gradient at exactly 0 is 0)."""
    x = np.asarray(x, dtype=np.float64)
    mask = x > 0
    return np.where(mask, x, 0.0), mask


def relu_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gradient of ReLU: dout where the input was positive, else 0."""
    return np.where(mask, dout, 0.0)


@dataclass(frozen=True)
class LinearCache:
    """Input and weight of a linear layer, for the backward pass."""

    x: np.ndarray  # (N, in_features) or (..., in_features)
    w: np.ndarray  # (out_features, in_features)
    has_bias: bool


def linear_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None
) -> tuple[np.ndarray, LinearCache]:
    """y = x W^T + b like ``F.linear``: x (..., in) and W (out, in) -> (..., out)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear: weight must be (out_features, in_features) with in_features == x.shape[-1]; received "
            f"x of shape {tuple(x.shape)} and weight of shape {tuple(w.shape)}. Flatten the input or fix "
            "in_features."
        )
    y = x @ w.T
    if b is not None:
        y = y + np.asarray(b, dtype=np.float64)
    return y, LinearCache(x, w, b is not None)


def linear_backward(dout: np.ndarray, cache: LinearCache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients (dx, dW, db): dx = dout W, dW = dout^T x summed over all leading axes, db = sum dout."""
    dx = dout @ cache.w
    # (..., out), (..., in) -> (out, in)
    dw = dout.reshape(-1, dout.shape[-1]).T @ cache.x.reshape(-1, cache.x.shape[-1])
    db = dout.reshape(-1, dout.shape[-1]).sum(axis=0) if cache.has_bias else None
    return dx, dw, db
