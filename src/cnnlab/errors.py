"""Errors that cnnlab raises for user mistakes.

Every user-facing failure is one of these (or a plain ``ValueError`` from :mod:`cnnlab.arith`),
so the command line can print it as one paragraph and exit with code 2 instead of a traceback.
Each message names the argument, states the rule, echoes what was received and suggests a fix.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """Base class of the errors cnnlab raises for bad input, bad files or missing data."""


class SpecError(CnnlabError, ValueError):
    """A network spec (file or dict) that cannot be built."""


class DataError(CnnlabError):
    """A dataset that is missing, corrupt or inconsistent."""


class CheckpointError(CnnlabError):
    """A checkpoint that is missing, corrupt, tampered with or does not fit the model."""


class AnalysisError(CnnlabError):
    """A model that cannot be traced or fails on the given input size."""


class ImageError(CnnlabError):
    """An image file that cannot be used (not an image, truncated, too large, wrong channels)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (Ctrl-C, SIGTERM) after saving its state; ``signum`` says which.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C stops on it too; the command line exits with
    ``128 + signum`` (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process ended by the signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
