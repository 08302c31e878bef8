"""The result of :func:`cnnlab.analysis.analyze`: one row per graph node, totals and design warnings.

The numbers follow one convention, stated in every rendered output (:data:`CONVENTION`): a MAC is one
multiply-add, FLOPs = 2 x MACs, and only convolution, transposed convolution and linear / matmul
ops are counted. Totals are column sums, so every renderer prints the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnlab.arith import RF

CONVENTION = (
    "MAC = one multiply-add; FLOPs = 2 x MACs. Counted: conv, conv-transpose, linear/matmul "
    "(bias additions excluded). Not counted: pooling, elementwise add/mul, normalisation (BN), "
    "activations, upsampling, padding, concat. 'connections' = MACs + one bias add per output of "
    "layers with a bias (LeCun 1998). Params = sum(p.numel()), shared parameters counted once. "
    "Receptive field (rf): size = largest over all paths (rf_min = smallest), jump = distance in "
    "input pixels between neighbouring units, start = input coordinate of the first unit's centre; "
    "rf is null (-) where no input pixel reaches the node (ops on parameters alone) or cnnlab does not "
    "know how the op maps its grid. After an upsample by s the jump is divided by s (below 1 means "
    "neighbouring output units step by a fraction of an input pixel): a nearest-upsampled unit sees "
    "exactly the region of the unit it copies, a (bi)linear one the union of the (up to) two units it mixes; "
    "upsampling adds no new context. A layer that combines the whole map (fc, global pooling) keeps the "
    "jump it reads, as explain rf does (a window as wide as the map that would slide by one unit); "
    "sizes are never cut to the input."
)

COUNTED_OPS = ("conv", "conv_transpose", "linear", "matmul")
NOT_COUNTED_OPS = ("pool", "adaptive_pool", "add", "mul", "cat", "norm", "activation", "upsample", "pad")


@dataclass(frozen=True)
class LintWarning:
    """One design-lint finding: ``rule`` name, ``level`` (info|warning|error), the ``layer`` and why."""

    rule: str
    level: str
    layer: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "level": self.level, "layer": self.layer, "message": self.message}


@dataclass
class LayerRow:
    """One node of the captured graph (a leaf module call or a functional op).

    ``rf`` holds the largest receptive field over all paths into the node (``None`` where the op
    is not understood); ``rf_min`` the smallest size per axis.
    """

    name: str
    type: str
    kind: str
    input_shapes: list[tuple[int, ...]]
    output_shape: tuple[int, ...]
    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    connections: int = 0
    activation_bytes: int = 0
    saved_bytes: int = 0
    rf: RF | None = None
    rf_min: tuple[int, ...] | None = None
    depth: int = 0

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        rf: dict[str, Any] | None = None
        if self.rf is not None:
            rf = {
                "size": list(self.rf.size),
                "size_min": list(self.rf_min or self.rf.size),
                "jump": [_num(v) for v in self.rf.jump],
                "start": [_num(v) for v in self.rf.start],
            }
        return {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "input_shapes": [list(s) for s in self.input_shapes],
            "output_shape": list(self.output_shape),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "flops": self.flops,
            "connections": self.connections,
            "activation_bytes": self.activation_bytes,
            "saved_bytes": self.saved_bytes,
            "rf": rf,
        }


@dataclass
class Totals:
    """Column sums over all rows, plus the peak of live tensors at inference."""

    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    connections: int = 0
    activation_bytes: int = 0  # sum of every node's fresh output tensors (torchinfo's "forward pass")
    saved_bytes: int = 0  # tensors autograd keeps for backward (training memory for activations)
    peak_inference_bytes: int = 0  # largest sum of live tensors along the graph order

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, int]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "flops": self.flops,
            "connections": self.connections,
            "activation_bytes": self.activation_bytes,
            "peak_inference_bytes": self.peak_inference_bytes,
            "training_saved_bytes": self.saved_bytes,
        }


@dataclass
class ModelReport:
    """What :func:`cnnlab.analysis.analyze` measures about one model at one input size.

    >>> import torch.nn as nn
    >>> from cnnlab.analysis import analyze
    >>> report = analyze(nn.Conv2d(1, 6, 5), (1, 32, 32))
    >>> report.totals.params, report.layers[1].macs  # layers[0] is the input
    (156, 117600)
    """

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerRow]
    totals: Totals
    warnings: list[LintWarning] = field(default_factory=list)
    capture: str = "fx"  # which path captured the graph: "fx" (symbolic trace) or "hooks"
    module_types: dict[str, str] = field(default_factory=dict)  # module path -> class name (for --depth)

    def layer(self, name: str) -> LayerRow:
        """The row of the module (or functional op) called ``name``; a ValueError lists close names."""
        for row in self.layers:
            if row.name == name:
                return row
        import difflib

        close = difflib.get_close_matches(name, [r.name for r in self.layers], n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"layer {name!r} is not in the report of {self.model}.{hint}")

    @property
    def final_spatial_rf(self) -> RF | None:
        """The receptive field of the last node that still has spatial axes (before global pooling)."""
        ndim = len(self.input_shape) - 1
        for row in reversed(self.layers):
            if row.rf is None or len(row.output_shape) != ndim + 2 or row.kind == "collapse":
                continue
            if row.kind == "adaptive_pool" and all(v == 1 for v in row.output_shape[2:]):
                continue  # global pooling: the head's view, not a feature map
            return row.rf
        return None

    def to_dict(self) -> dict[str, Any]:
        """DESIGN.md's JSON contract (plus extra fields)."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "capture": self.capture,
            "convention": CONVENTION,
            "counted_ops": list(COUNTED_OPS),
            "not_counted_ops": list(NOT_COUNTED_OPS),
            "totals": self.totals.to_dict(),
            "layers": [row.to_dict() for row in self.layers],
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _num(v: float) -> float | int:
    """Integral floats as ints so JSON shows ``16`` rather than ``16.0``."""
    return int(v) if float(v).is_integer() else round(float(v), 6)
