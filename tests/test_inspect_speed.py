"""``cnnlab inspect`` stays fast: no op on the meta device may pull in torch._dynamo (a 1-2 s import).

Building a registered model on meta (``normal_`` in its initialiser) and a ResNet's functional
``F.relu`` / ``F.adaptive_avg_pool2d`` each imported it through PyTorch's Python reference kernels,
more than doubling the time of ``cnnlab inspect resnet50``. The stand-ins must give the same shapes,
bytes and saved-for-backward bytes as the real ops.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.analysis import analyze

PROBE = """
import sys
from cnnlab.analysis import analyze
from cnnlab.analysis.target import load_target
target = load_target("resnet18")
assert next(target.model.parameters()).is_meta
report = analyze(target.model, (3, 64, 64))
print(report.totals.params, "torch._dynamo" in sys.modules)
"""


def test_inspecting_a_registered_resnet_does_not_import_dynamo() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    params, dynamo = done.stdout.split()
    assert int(params) == 11_689_512  # resnet18's registered count
    assert dynamo == "False"


class Functional(nn.Module):
    """ReLU and global pooling written as functions, the way ResNets write their block ends."""

    def __init__(self, inplace: bool, method: bool, size: int | tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.inplace, self.method, self.size = inplace, method, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.method:
            y = y.relu_() if self.inplace else y.relu()
        else:
            y = F.relu(y, inplace=self.inplace)
        return F.adaptive_avg_pool2d(torch.relu(y), self.size)


class Modules(nn.Module):
    def __init__(self, inplace: bool, size: int | tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.act = nn.ReLU(inplace=inplace)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act2(self.act(self.conv(x))))


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("method", [False, True])
@pytest.mark.parametrize("size", [1, (2, 3)])
def test_functional_stand_ins_match_modules_and_real_shapes(
    inplace: bool, method: bool, size: int | tuple[int, int]
) -> None:
    net = Functional(inplace, method, size)
    got = analyze(net, (3, 9, 11))
    want = analyze(Modules(inplace, size), (3, 9, 11))
    assert [r.output_shape for r in got.layers] == [r.output_shape for r in want.layers]
    assert [r.activation_bytes for r in got.layers] == [r.activation_bytes for r in want.layers]
    assert [r.saved_bytes for r in got.layers] == [r.saved_bytes for r in want.layers]
    assert got.totals.peak_inference_bytes == want.totals.peak_inference_bytes
    with torch.no_grad():
        real = net(torch.rand(1, 3, 9, 11))
    assert got.layers[-1].output_shape == tuple(real.shape)
