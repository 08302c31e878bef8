"""Pictures of convolutional networks: kernels, feature maps, edges, receptive fields, Grad-CAM,
conv-arithmetic animations, training curves and the self-contained HTML report.

Everything renders off-screen (matplotlib's Agg backend and Pillow) and works on any ``nn.Module``.
Heavy imports stay inside the submodules so ``import cnnlab.viz`` is cheap.

>>> from cnnlab.viz.edges import DEFAULT_KERNELS
>>> DEFAULT_KERNELS[:2]
('vertical', 'horizontal')
"""

from __future__ import annotations

__all__: list[str] = []
