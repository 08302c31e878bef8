"""The declarative spec: the three examples against hand-written torch, the formats, the head, the errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import yaml

from cnnlab.cli.main import main as cli_main
from cnnlab.errors import SpecError
from cnnlab.models import create_model, from_spec
from cnnlab.models.inception import INCEPTION_CFG, Inception
from cnnlab.models.spec import SpecNet, load_spec

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def copy_into(reference: nn.Module, built: nn.Module) -> None:
    """Copy ``built``'s parameters and buffers into ``reference`` in order; their shapes must agree one by one."""
    ours = [*built.parameters(), *built.buffers()]
    theirs = [*reference.parameters(), *reference.buffers()]
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs]
    with torch.no_grad():
        for src, dst in zip(ours, theirs):
            dst.copy_(src)


def assert_same_function(reference: nn.Module, built: nn.Module, input_size: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    for module in built.modules():  # non-trivial BN statistics, so a BN in the wrong place shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    copy_into(reference, built)
    built.eval()
    reference.eval()
    x = torch.randn(2, *input_size)
    torch.testing.assert_close(built(x), reference(x))


def test_lenet_toml_is_lenet5() -> None:
    net = from_spec(SPECS / "lenet.toml")
    reference = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    assert n_params(net) == n_params(create_model("lenet5")) == 61_706
    assert net.input_size == (1, 32, 32) and net.output_shape == (10,)
    assert_same_function(reference, net, net.input_size)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


def test_small_resnet_yaml_is_a_two_block_resnet() -> None:
    net = from_spec(SPECS / "small_resnet.yaml")
    reference = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        _BasicBlock(16, 16, 1), _BasicBlock(16, 32, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip
    assert n_params(net) == n_params(reference) == 19_994
    assert net.num_features == 32 and net.output_shape == (10,)
    assert_same_function(reference, net, net.input_size)


def test_inception_block_yaml_is_googlenet_3a() -> None:
    net = from_spec(SPECS / "inception_block.yaml")
    reference = Inception(192, *INCEPTION_CFG["3a"])
    assert n_params(net) == n_params(reference) == 163_696  # 64+128+32+32 = 256 maps
    assert net.output_shape == (256, 28, 28)
    assert_same_function(reference, net, net.input_size)


SMALL: dict[str, Any] = {
    "name": "small",
    "input": [3, 16, 16],
    "layers": [
        {"conv": 8, "kernel": 3, "stride": 2, "padding": "same", "bias": False},
        "bn",
        {"leaky_relu": 0.1},
        {"residual": {"body": [{"conv": 8, "padding": 1}, "relu"]}, "act": "relu"},
        {"concat": [[{"conv1x1": 4}], [{"avgpool": 3, "stride": 1, "padding": 1}], []], "name": "mix"},
        {"conv_transpose": 6, "kernel": 2, "stride": 2},
        {"upsample": 0.5, "mode": "bilinear"},
        "global_maxpool",
        "flatten",
        {"dropout": 0.2},
        {"linear": 5},
    ],
}
SMALL_TOML = """
name = "small"
input = [3, 16, 16]

[[layers]]
conv = 8
kernel = 3
stride = 2
padding = "same"
bias = false

[[layers]]
bn = {}

[[layers]]
leaky_relu = 0.1

[[layers]]
act = "relu"
[[layers.residual.body]]
conv = 8
padding = 1
[[layers.residual.body]]
relu = {}

[[layers]]
concat = [[{conv1x1 = 4}], [{avgpool = 3, stride = 1, padding = 1}], []]
name = "mix"

[[layers]]
conv_transpose = 6
kernel = 2
stride = 2

[[layers]]
upsample = 0.5
mode = "bilinear"

[[layers]]
global_maxpool = {}

[[layers]]
flatten = {}

[[layers]]
dropout = 0.2

[[layers]]
linear = 5
"""


def test_dict_toml_yaml_json_build_the_same_network(tmp_path: Path) -> None:
    sources: list[Any] = [
        SMALL,
        _write(tmp_path / "s.toml", SMALL_TOML),  # [[layers.residual.body]] puts `residual` after `act`
        _write(tmp_path / "s.yaml", yaml.safe_dump(SMALL, sort_keys=False)),
        _write(tmp_path / "s.json", json.dumps(SMALL)),
    ]
    x = torch.randn(2, 3, 16, 16)
    outs, reprs = [], []
    for source in sources:
        torch.manual_seed(0)
        net = from_spec(source).eval()
        reprs.append(repr(net.features) + repr(net.head))
        outs.append(net(x))
    assert all(r == reprs[0] for r in reprs)
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0])
    assert outs[0].shape == (2, 5)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_features_head_and_classifier() -> None:
    net = from_spec(SMALL)
    assert [n for n, _ in net.features.named_children()] == [
        "conv1", "bn1", "leaky_relu1", "residual1", "mix", "conv_transpose1", "upsample1",
    ]  # fmt: skip
    assert [n for n, _ in net.head.named_children()] == ["global_maxpool1", "flatten1", "dropout1", "linear1"]
    assert [n for n, _ in net.features.mix.named_children()] == ["branch1", "branch2", "branch3"]
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    feats = net.forward_features(x)
    assert feats.shape == (2, net.num_features, 8, 8) and net.num_features == 6
    torch.testing.assert_close(net.forward_head(feats), net(x))
    assert net.forward_head(feats, pre_logits=True).shape == (2, 6)
    net.reset_classifier(3)
    assert net(x).shape == (2, 3)


def test_spec_without_linear_has_no_classifier() -> None:
    net = from_spec({"input": [1, 8, 8], "layers": [{"conv": 4}, "relu", "global_avgpool"]})
    assert len(net.head) == 0 and net.num_features == 4 and net.output_shape == (4, 1, 1)
    with pytest.raises(SpecError, match=r"has no classifier head \(its last layer is not `linear`\)"):
        net.reset_classifier(3)


def test_same_padding_any_stride_and_padding_modes() -> None:
    for stride in (1, 2, 3):
        for k in (1, 2, 3, 4, 5):
            net = from_spec(
                {"input": [1, 11, 7], "layers": [{"conv": 2, "kernel": k, "stride": stride, "padding": "same"}]}
            )
            expected = (2, -(-11 // stride), -(-7 // stride))  # ceil(n / s), TensorFlow's rule
            assert net.output_shape == expected == tuple(net(torch.zeros(1, 1, 11, 7)).shape[1:])
    for mode in ("reflect", "replicate", "circular"):
        net = from_spec({"input": [1, 6, 6], "layers": [{"conv": 1, "kernel": 5, "padding": 2, "padding_mode": mode}]})
        assert net(torch.zeros(1, 1, 6, 6)).shape == (1, 1, 6, 6)


def test_layers_from_cnnlab_layers() -> None:
    net = from_spec(
        {
            "input": [2, 12, 12],
            "layers": [
                {"edge": ["sobel_x", "sobel_y"], "padding": 1},  # 2 channels x 2 kernels
                {"gated_conv": 3},
                {"sumpool": 2},
                {"resize_conv": 4, "scale": 2},
            ],
        }
    )
    assert net.output_shape == (4, 12, 12) == tuple(net(torch.zeros(1, 2, 12, 12)).shape[1:])
    edge = net.features.edge1
    assert not any(p.requires_grad for p in edge.parameters())  # frozen filters
    x = torch.ones(1, 1, 4, 4)
    assert float(from_spec({"input": [1, 4, 4], "layers": [{"sumpool": 2}]})(x).max()) == 4.0  # a sum, not a mean


# ----------------------------------------------------------------------------------------------------
# Errors: while building, naming the layer, the rule, the values and the fix
# ----------------------------------------------------------------------------------------------------


def _spec(*layers: Any, input: list[int] | None = None) -> dict[str, Any]:
    return {"input": input or [3, 8, 8], "layers": list(layers)}


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (
            _spec({"conv": 4}, {"covn": 8}),
            r"spec layers\[1\]: unknown layer type 'covn'\. Did you mean: conv.*Known types: conv, conv1x1",
        ),
        (
            _spec({"conv": 4, "relu": None}),
            r"layers\[0\]: one layer per entry, but this one names the types 'conv', 'relu'",
        ),
        (_spec({"kernel": 3, "name": "x"}), r"layers\[0\]: the layer has no type; received"),
        (
            _spec({"conv": 6, "padding": 1}, {"conv": 8, "in": 3}),
            r"spec layers\[1\] \(conv 'conv2'\): channels do not chain: the layer declares in=3 but the layer before "
            r"gives 6\. Remove `in` .* or change the previous layer's output to 3",
        ),
        (
            _spec("flatten", {"linear": 10, "in": 100}),
            r"layers\[1\] \(linear 'linear1'\): channels do not chain: the layer declares in=100 but .* gives 192",
        ),
        (
            _spec({"maxpool": 2}, {"conv": 8, "kernel": 5, "name": "big"}),
            r"spec layers\[1\] \(conv 'big'\): the kernel does not fit the \(padded\) feature map: conv output would "
            r"be 0 along H: input 4, kernel 5, padding 0.* Use a smaller kernel",
        ),
        (
            _spec({"concat": [[{"conv": 4, "padding": 1}], [{"conv": 4, "stride": 2, "padding": 1}]]}),
            r"spec layers\[0\] \(concat 'concat1'\): branches are concatenated along channels, so all other sizes "
            r"must be equal; received branch 0: \(4, 8, 8\); branch 1: \(4, 4, 4\)\. Change the strides/padding",
        ),
        (
            _spec({"residual": [{"conv": 8, "stride": 2, "padding": 1}]}),
            r"spec layers\[0\] \(residual 'residual1'\): a residual adds its body and shortcut, so their shapes must "
            r"be equal; the body gives \(8, 4, 4\) but the shortcut gives \(3, 8, 8\).*Add `projection: true`",
        ),
        (
            _spec({"conv": 4}, {"branch": [[{"conv": 2}], [{"conv": 2, "kernel": 9}]]}),
            r"spec layers\[1\]\.branch\[1\]\[0\] \(conv 'conv1'\): the kernel does not fit",
        ),
        (
            _spec({"residual": {"body": [{"conv": 3, "padding": 1}, {"maxpol": 2}]}}),
            r"spec layers\[0\]\.residual\.body\[1\]: unknown layer type 'maxpol'.*Did you mean: maxpool",
        ),
        (_spec({"conv": 4, "kernal": 3}), r"layers\[0\] \(conv\): unknown option 'kernal'\. Did you mean: kernel\?"),
        (_spec({"conv": 4}, {"linear": 10}), r"layers\[1\] \(linear 'linear1'\): `linear` needs flat .*add `flatten`"),
        (_spec("flatten", {"conv": 4}), r"layers\[1\] \(conv 'conv1'\): this layer needs a \(C, H, W\) feature map"),
        (_spec({"conv": 6, "groups": 4}), r"groups must divide both .* received groups=4 with 3 input and 6 output"),
        (_spec({"conv": 0}), r"`out` must be an integer >= 1; received out=0"),
        (_spec({"conv": 4, "padding": 8, "padding_mode": "reflect"}), r"padding_mode 'reflect' needs padding smaller"),
        (_spec({"maxpool": 2, "padding": 2}), r"pooling padding must be at most half the kernel size"),
        (_spec({"conv_transpose": 2, "stride": 2, "output_padding": 2}), r"output_padding must be >= 0 and smaller"),
        (  # it was accepted and ignored: the layer padded with zeros
            _spec({"conv_transpose": 2, "padding": 1, "padding_mode": "reflect"}),
            r"layers\[0\] \(conv_transpose 'conv_transpose1'\): a transposed convolution pads only with zeros "
            r"\(PyTorch's ConvTranspose2d has no other padding_mode\); received padding_mode='reflect'\. Remove",
        ),
        (_spec({"conv": 4}, {"conv": 4}, {"conv": 4, "name": "conv1"}), r"the name 'conv1' is already used"),
        (_spec({"upsample": 0.01}), r"the output would be empty"),
        (_spec(), r"spec layers: must be a non-empty list"),
        (_spec("relu", input=[1, 28]), r"spec input: must be \[channels, height, width\]"),
        ({"input": [1, 4, 4], "layer": []}, r"unknown top-level key 'layer'\. Did you mean: layers\?"),
    ],
)
def test_bad_specs_fail_while_building(spec: dict[str, Any], pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        from_spec(spec)


@pytest.mark.parametrize(
    ("spec", "received"),
    [(123, r"int 123\."), (None, r"NoneType None\."), (["relu"], r"list \['relu'\] \(a list of layers goes under")],
)
def test_a_spec_that_is_neither_a_path_nor_a_dict_is_a_spec_error(spec: Any, received: str) -> None:
    """These were a raw TypeError ('int' object is not iterable) or ValueError (dictionary update sequence)."""
    with pytest.raises(SpecError, match=r"spec: must be a path to a .*file or a dict .*received " + received):
        from_spec(spec)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"suffix must be \.toml, \.yaml, \.yml or \.json; received '\.txt'"):
        from_spec(_write(tmp_path / "net.txt", "{}"))
    with pytest.raises(SpecError, match=r"not valid TOML"):
        from_spec(_write(tmp_path / "net.toml", "input = [1, 2"))
    with pytest.raises(SpecError, match=r"not valid YAML"):
        from_spec(_write(tmp_path / "net.yaml", "layers: [a, b"))
    with pytest.raises(SpecError, match=r"must hold a mapping .*received list"):
        from_spec(_write(tmp_path / "net.json", "[1, 2]"))
    with pytest.raises(SpecError, match=r"cannot be read"):
        from_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["lenet.toml", "small_resnet.yaml", "inception_block.yaml"])
def test_cnnlab_inspect_reads_the_examples(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["inspect", str(SPECS / name), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    net = from_spec(SPECS / name)
    assert report["totals"]["params"] == n_params(net)
    assert report["input_shape"][-3:] == list(net.input_size)


def test_cnnlab_inspect_bad_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "bad.yaml", "input: [1, 8, 8]\nlayers:\n  - conv: 4\n  - covn: 8\n")
    assert cli_main(["inspect", str(path)]) == 2
    assert "layers[1]: unknown layer type 'covn'" in capsys.readouterr().err


def test_specnet_keeps_its_spec() -> None:
    net = from_spec(SMALL)
    assert isinstance(net, SpecNet) and net.spec["layers"] == SMALL["layers"] and net.name == "small"


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_a_binary_spec_file_is_named_with_the_fix(tmp_path: Path, suffix: str) -> None:
    # It used to be the bare "'utf-8' codec can't decode byte 0xff in position 0", naming no file.
    spec = tmp_path / f"net{suffix}"
    spec.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SpecError, match=rf"spec file .*net\{suffix}: is not UTF-8 text \(byte 0xff at offset 0\)"):
        load_spec(spec)


def test_a_residual_with_an_empty_body_is_refused() -> None:
    # It built and computed x + x (an identity body added to an identity shortcut), where an empty
    # concat was already refused.
    with pytest.raises(SpecError, match=r"\(residual 'residual1'\): a residual needs at least one layer in its body"):
        from_spec({"input": [1, 8, 8], "layers": [{"residual": []}]})
