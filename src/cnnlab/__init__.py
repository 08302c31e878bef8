"""cnnlab: design, understand, train, measure and show convolutional neural networks.

Importing :mod:`cnnlab` is cheap: torch is only imported by the sub-packages that need it
(``cnnlab.layers``, ``cnnlab.models``, ``cnnlab.analysis``, ``cnnlab.train``, ...).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
