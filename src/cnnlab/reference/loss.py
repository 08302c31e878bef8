"""Softmax cross-entropy (mean over the batch) in NumPy with its hand-written gradient.

Example:
    >>> loss, cache = softmax_cross_entropy_forward(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6) == round(float(np.log(4)), 6)
    True
    >>> softmax_cross_entropy_backward(1.0, cache)[0].tolist()
    [-0.375, 0.125, 0.125, 0.125]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CrossEntropyCache:
    """Softmax probabilities (N, K) and the integer targets (N,)."""

    probs: np.ndarray
    targets: np.ndarray


def softmax_cross_entropy_forward(logits: np.ndarray, targets: np.ndarray) -> tuple[float, CrossEntropyCache]:
    """Mean over the batch of -log softmax(logits)[target], like ``F.cross_entropy``.

    logits: (N, K) floats; targets: (N,) class indices in [0, K).
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(
            f"cross-entropy: logits must be (N, K) and targets (N,); received logits {tuple(logits.shape)} "
            f"and targets {tuple(targets.shape)}. Give one class index per row of logits."
        )
    k = logits.shape[1]
    if not np.issubdtype(targets.dtype, np.integer) or (
        targets.size > 0 and (targets.min() < 0 or targets.max() >= k)
    ):
        raise ValueError(
            f"cross-entropy: targets must be integer class indices in [0, {k}); received {targets.tolist()}. "
            "Map labels to 0..K-1."
        )
    # subtract the row maximum before exp so large logits do not overflow (log-sum-exp trick)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -float(log_probs[np.arange(len(targets)), targets].mean())
    return loss, CrossEntropyCache(np.exp(log_probs), targets)


def softmax_cross_entropy_backward(dloss: float, cache: CrossEntropyCache) -> np.ndarray:
    """Gradient w.r.t. the logits: (softmax - one_hot(target)) / N, times the upstream dloss."""
    grad = cache.probs.copy()
    grad[np.arange(len(cache.targets)), cache.targets] -= 1.0
    return grad * (dloss / len(cache.targets))
