"""GoogLeNet against Table 1 of the paper: block widths, true 5x5 branches, LRN and aux heads."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.models import create_model
from cnnlab.models.inception import Inception


def test_blocks_have_the_paper_output_widths_and_sizes() -> None:
    """Table 1: 3a 256@28, 3b 480@28, 4a-4c 512@14, 4d 528@14, 4e 832@14, 5a 832@7, 5b 1024@7."""
    with torch.device("meta"):
        model = create_model("googlenet").eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for name, m in model.named_children():
        if isinstance(m, Inception):
            m.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert shapes == {
        "inception3a": (256, 28, 28), "inception3b": (480, 28, 28), "inception4a": (512, 14, 14),
        "inception4b": (512, 14, 14), "inception4c": (512, 14, 14), "inception4d": (528, 14, 14),
        "inception4e": (832, 14, 14), "inception5a": (832, 7, 7), "inception5b": (1024, 7, 7),
    }  # fmt: skip


def test_five_by_five_branch_is_a_true_5x5_after_a_1x1_reduction() -> None:
    model = create_model("googlenet", width_mult=1 / 16)
    blocks = [m for m in model.modules() if isinstance(m, Inception)]
    assert len(blocks) == 9
    for b in blocks:
        assert b.branch3[0][0].kernel_size == (1, 1) and b.branch3[1][0].kernel_size == (5, 5)
        assert b.branch2[0][0].kernel_size == (1, 1) and b.branch2[1][0].kernel_size == (3, 3)


def test_block_is_the_concatenation_of_its_branches() -> None:
    torch.manual_seed(0)
    block = Inception(8, 2, 3, 4, 2, 3, 5).eval()
    x = torch.randn(2, 8, 9, 9)
    parts = [block.branch1(x), block.branch2(x), block.branch3(x), block.branch4(x)]
    assert [p.shape[1] for p in parts] == [2, 4, 3, 5]
    torch.testing.assert_close(block(x), torch.cat(parts, 1))


def test_lrn_and_batch_norm_options() -> None:
    plain = create_model("googlenet", width_mult=1 / 16)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in plain.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    bn = create_model("googlenet_bn", width_mult=1 / 16)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in bn.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 57  # every conv


def test_aux_heads_are_off_by_default_and_work_when_on() -> None:
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=10, width_mult=1 / 16)
    assert model.aux1 is None and model.aux2 is None
    x = torch.randn(2, 3, 224, 224)
    logits, aux = model.eval().forward_aux(x)
    assert aux == [] and logits.shape == (2, 10)
    with_aux = create_model("googlenet", num_classes=10, width_mult=1 / 16, aux_logits=True).eval()
    logits, aux = with_aux.forward_aux(x)
    assert [a.shape for a in aux] == [(2, 10), (2, 10)]
    torch.testing.assert_close(logits, with_aux(x))
    with_aux.reset_classifier(3)
    assert [a.shape for a in with_aux.forward_aux(x)[1]] == [(2, 3), (2, 3)]


def test_aux_head_size_of_the_paper() -> None:
    """Each aux head: 1x1 conv 128 (65,664) + FC 2048->1024 (2,098,176) + FC 1024->1000 (1,025,000)."""
    with torch.device("meta"):
        plain, aux = create_model("googlenet"), create_model("googlenet", aux_logits=True)
    extra = sum(p.numel() for p in aux.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == (65_664 + 2_098_176 + 1_025_000) + (528 * 128 + 128 + 2_098_176 + 1_025_000)
