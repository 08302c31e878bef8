"""Pictures of cnnlab.viz on a tiny model trained in a fixture to find a bright square.

Each test checks a property of the picture (tile counts, pixel sizes, where a maximum lies, values
against torch.nn.functional), not merely that a file was written.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from cnnlab.viz.animate import conv_animation
from cnnlab.viz.edges import EDGE_KERNELS, edge_figure, edge_responses
from cnnlab.viz.features import feature_figure, feature_stages
from cnnlab.viz.filters import kernel_grid
from cnnlab.viz.gradcam import grad_cam, last_spatial_layer
from cnnlab.viz.hooks import one_thread
from cnnlab.viz.rf import erf_radius, receptive_field, rf_figure

SIZE, SQUARE = 24, 6


def _make(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Noise images; class 1 holds a bright 6x6 square, class 0 a bright 2x12 bar (same brightness)."""
    x = torch.rand(n, 1, SIZE, SIZE, generator=g) * 90
    y = torch.randint(0, 2, (n,), generator=g)
    corners = []
    for i in range(n):
        r, c = torch.randint(0, SIZE - SQUARE, (2,), generator=g).tolist()
        if y[i] == 1:
            x[i, 0, r : r + SQUARE, c : c + SQUARE] = 230
        else:
            x[i, 0, r + 2 : r + 4, max(0, c - 3) : c + 9] = 230
        corners.append((r, c))
    return x / 255, y, corners


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


@pytest.fixture(scope="module")
def square_net() -> nn.Sequential:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    with one_thread():  # a tiny net: a second thread only adds hand-offs (2-3x slower on a busy machine)
        for _ in range(100):
            x, y, _ = _make(48, g)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


# ---------------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize(
    ("shape", "tile_count"), [((8, 3, 5, 5), 8), ((6, 1, 3, 3), 6), ((4, 5, 3, 3), 20), ((64, 64, 3, 3), 1024)]
)
def test_kernel_grid_has_one_tile_per_kernel(shape: tuple[int, ...], tile_count: int) -> None:
    g = kernel_grid(torch.randn(shape), tile=15, gap=2)
    assert g.tiles == tile_count
    cell = shape[2] * (15 // shape[2])
    assert g.image.shape == (g.rows * (cell + 2) + 2, g.cols * (cell + 2) + 2, 3)
    assert g.rows * g.cols >= tile_count > (g.rows - 1) * g.cols


def test_kernel_grid_normalises_each_kernel_and_keeps_rgb() -> None:
    w = torch.zeros(2, 3, 1, 1)
    w[0, 0] = 1.0  # pure red filter with tiny weights
    w[1, 2] = 100.0  # pure blue filter with huge weights
    w[0] *= 1e-3
    g = kernel_grid(w, tile=4, gap=1)
    first = g.image[1:5, 1:5].reshape(-1, 3)
    second = g.image[1:5, 6:10].reshape(-1, 3)
    assert (first == [255, 0, 0]).all() and (second == [0, 0, 255]).all()


def test_first_layer_of_trained_model(square_net: nn.Sequential) -> None:
    g = kernel_grid(square_net[0].weight)
    assert g.tiles == square_net[0].out_channels == 8


# ---------------------------------------------------------------------------------------------- features


def test_feature_maps_before_and_after_activation(square_net: nn.Sequential) -> None:
    x, _, _ = _make(1, torch.Generator().manual_seed(1))
    stages = feature_stages(square_net, x)
    assert [s.name for s in stages] == ["1", "3", "6"]
    for s in stages:
        assert s.post is not None
        torch.testing.assert_close(s.post, s.pre.clamp_min(0))  # ReLU, even the in-place one
    assert square_net[3].inplace is True
    conv = feature_stages(square_net, x, ["0"])[0]
    torch.testing.assert_close(conv.pre, square_net[0](x)[0].detach())
    picture = feature_figure(stages)
    assert picture.ndim == 3 and picture.shape[1] > 200
    with pytest.raises(ValueError, match="--layers 'nope'"):
        feature_stages(square_net, x, ["nope"])


# ---------------------------------------------------------------------------------------------- edges


def test_vertical_step_edge_is_largest_at_the_step_column() -> None:
    step = 13
    img = torch.zeros(1, 20, 30)
    img[:, :, :step] = 200.0  # bright left, dark right: the seeds' picture
    responses = edge_responses(img)
    for name in ("vertical", "sobel_x", "scharr_x"):
        col_strength = responses[name].abs().sum(0)  # output column c is centred on input column c + 1
        best = int(col_strength.argmax()) + 1
        assert best in (step - 1, step), name
        assert float(responses[name].min()) >= 0  # bright-to-dark is positive
    assert float(responses["horizontal"].abs().max()) == 0.0
    assert edge_figure(img).shape[2] == 3


def test_seed_example_6x6() -> None:
    img = torch.tensor([[10.0] * 3 + [0.0] * 3] * 6)
    out = edge_responses(img, ["vertical"])["vertical"]
    assert out.tolist() == [[0.0, 30.0, 30.0, 0.0]] * 4
    assert [list(r) for r in EDGE_KERNELS["horizontal"]] == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]
    lap = edge_responses(torch.zeros(5, 5).index_fill_(1, torch.tensor([2]), 9.0), ["laplacian"])["laplacian"]
    assert lap[:, 1].tolist() == [-18.0] * 3 and lap[:, 0].tolist() == [9.0] * 3  # a bright line, cnnlab.layers' kernel


# ----------------------------------------------------------------------------------- receptive field


def test_rf_box_matches_analysis_and_bounds_the_gradient(square_net: nn.Sequential) -> None:
    from cnnlab.analysis import analyze

    x, _, _ = _make(1, torch.Generator().manual_seed(2))
    rf = receptive_field(square_net, "5", x)
    row = analyze(square_net, (1, SIZE, SIZE)).layer("5")
    # conv3 -> conv3 -> pool2 -> conv3: 3, 5, 6, then 6 + 2*2 = 10 pixels, jump 2
    assert rf.size == tuple(row.rf.size) == (10, 10)
    top, left, bottom, right = rf.box
    assert (bottom - top + 1, right - left + 1) == rf.size
    nz = rf.erf.nonzero()
    assert int(nz[:, 0].min()) >= top and int(nz[:, 0].max()) <= bottom
    assert int(nz[:, 1].min()) >= left and int(nz[:, 1].max()) <= right
    assert 0 < rf.erf_radius <= np.hypot(5, 5) and rf.erf_size <= 10
    picture = rf_figure(x[0] * 255, rf)
    assert picture.shape[2] == 3


def test_erf_radius_of_known_mass() -> None:
    g = np.zeros((11, 11))
    g[5, 5], g[5, 8] = 19.0, 1.0  # 95% of the mass at the centre, 5% three pixels away
    assert erf_radius(g, (5.0, 5.0), 0.95) == (0.0, 1)
    assert erf_radius(g, (5.0, 5.0), 0.99) == (3.0, 7)


# ---------------------------------------------------------------------------------------------- Grad-CAM


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_gradcam_finds_the_bright_square(square_net: nn.Sequential) -> None:
    x, y, corners = _make(24, torch.Generator().manual_seed(3))
    assert last_spatial_layer(square_net, x[:1]) == "6"
    hits = total = 0
    for i in np.flatnonzero(y.numpy() == 1):
        res = grad_cam(square_net, x[i], target=1)
        r, c = corners[i]
        yy, xx = divmod(int(res.cam.argmax()), SIZE)
        hits += r <= yy < r + SQUARE and c <= xx < c + SQUARE
        total += 1
        assert res.cam.shape == res.saliency.shape == (SIZE, SIZE)
    assert total >= 8 and hits == total
    assert _hook_count(square_net) == 0 and square_net[3].inplace is True


def test_gradcam_releases_hooks_on_error(square_net: nn.Sequential) -> None:
    with pytest.raises(ValueError, match="target must be a class index"):
        grad_cam(square_net, torch.rand(1, SIZE, SIZE), target=5)
    assert _hook_count(square_net) == 0 and square_net[3].inplace is True


# ---------------------------------------------------------------------------------------------- animation


@pytest.mark.parametrize(
    ("kind", "n", "k", "s", "p", "d", "op"),
    [
        ("conv", 5, 3, 2, 1, 1, 0),
        ("conv", 7, 3, 1, 0, 2, 0),
        ("pool", 5, 3, 2, 1, 1, 0),
        ("transposed", 3, 3, 2, 1, 1, 1),
        ("transposed", 4, 3, 2, 3, 1, 0),
        ("transposed", 3, 2, 2, 0, 2, 1),
    ],
)
def test_animation_values_match_torch(tmp_path, kind: str, n: int, k: int, s: int, p: int, d: int, op: int) -> None:
    gif = tmp_path / "a.gif"
    an = conv_animation(kind, n, k, s, p, d, output_padding=op, path=gif, frames_dir=tmp_path / "frames")
    x = torch.tensor(an.input)[None, None]
    w = torch.tensor(an.kernel)[None, None]
    if kind == "conv":
        ref = F.conv2d(x, w, stride=s, padding=p, dilation=d)
    elif kind == "pool":
        ref = F.max_pool2d(x, k, s, p, d)
    else:
        ref = F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, dilation=d)
    np.testing.assert_allclose(an.output, ref[0, 0].numpy())
    o = an.output.shape[0]
    with Image.open(gif) as im:
        assert im.n_frames == an.frames == o * o
        assert im.size == an.frame_size
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == o * o


def test_animation_rejects_impossible_numbers() -> None:
    with pytest.raises(ValueError, match="--stride must be an integer >= 1"):
        conv_animation("conv", 5, 3, s=0)
    with pytest.raises(ValueError):
        conv_animation("conv", 2, 5)  # output would be empty (cnnlab.arith says why)
    with pytest.raises(ValueError, match="kind must be one of"):
        conv_animation("deconv", 5, 3)
