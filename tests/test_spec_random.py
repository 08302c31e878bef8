"""Random specs: each one either builds a module whose forward gives the predicted shape, or raises SpecError.

The generator draws layers with random kernels, strides, paddings (ints, 'same', 'valid'), dilations,
groups, padding modes, transposed convs, three kinds of pooling, upsampling, flatten/linear, and
nested residual and concat blocks, on tiny inputs, so many draws are invalid (a kernel larger than
the map, groups that do not divide, a linear before flatten, branches of different sizes).
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.errors import SpecError
from cnnlab.models import from_spec

small = st.integers(1, 4)
size_or_pair = st.one_of(st.integers(1, 5), st.lists(st.integers(1, 5), min_size=2, max_size=2))
pair = st.lists(st.integers(0, 2), min_size=2, max_size=2)
padding = st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"]), pair, st.lists(pair, min_size=2, max_size=2))


def _maybe(key: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An optional option: absent (the default) or drawn from ``values``."""
    return st.one_of(st.just({}), values.map(lambda v: {key: v}))


def _layer(kind: str, main: st.SearchStrategy[Any], **options: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    parts = [_maybe(k, v) for k, v in options.items()]
    return st.tuples(main, *parts).map(lambda t: {kind: t[0], **{k: v for d in t[1:] for k, v in d.items()}})


CONV = _layer(
    "conv", st.integers(1, 6), kernel=size_or_pair, stride=st.integers(1, 3), padding=padding,
    dilation=st.integers(1, 3), groups=st.integers(1, 3), bias=st.booleans(),
    padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]), **{"in": st.integers(1, 6)},
)  # fmt: skip
TRANSPOSED = _layer(
    "conv_transpose", st.integers(1, 6), kernel=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2),
    output_padding=st.integers(0, 2), dilation=st.integers(1, 2), groups=st.integers(1, 2),
)  # fmt: skip
MAXPOOL = _layer(
    "maxpool", st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2), ceil_mode=st.booleans(),
    dilation=st.integers(1, 2),
)  # fmt: skip
LEAVES = st.one_of(
    CONV,
    _layer("conv1x1", st.integers(1, 6), stride=st.integers(1, 2)),
    TRANSPOSED,
    MAXPOOL,
    _layer("avgpool", st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2), ceil_mode=st.booleans()),
    _layer("sumpool", st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 1)),
    _layer("upsample", st.sampled_from([0.5, 1, 1.5, 2]), mode=st.sampled_from(["nearest", "bilinear"])),
    _layer("edge", st.sampled_from(["sobel_x", "laplacian", ["vertical", "horizontal"]]), padding=st.integers(0, 1)),
    _layer("gated_conv", small, kernel=st.integers(1, 3), stride=st.integers(1, 2)),
    _layer("linear", small),
    _layer("dropout", st.sampled_from([0.0, 0.5])),
    st.sampled_from(["bn", "relu", "tanh", "gelu", "flatten", "global_avgpool", "identity", {"leaky_relu": 0.2}]),
)


def _blocks(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    body = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.tuples(body, st.booleans()).map(lambda t: {"residual": t[0], "projection": t[1]}),
        st.lists(st.lists(children, max_size=2), min_size=1, max_size=3).map(lambda b: {"concat": b}),
    )


LAYERS = st.recursive(LEAVES, _blocks, max_leaves=8)
HEADS = st.sampled_from([[], ["flatten", {"linear": 3}], ["global_avgpool", "flatten", {"dropout": 0.1}, {"fc": 2}]])
SPECS = st.fixed_dictionaries(
    {
        "input": st.tuples(small, st.integers(1, 12), st.integers(1, 12)).map(list),
        "layers": st.tuples(st.lists(LAYERS, min_size=1, max_size=5), HEADS).map(lambda t: t[0] + t[1]),
    }
)


def test_random_specs_build_and_run_or_raise_spec_error() -> None:
    outcomes = {"built": 0, "spec_error": 0}

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(SPECS)
    def check(spec: dict[str, Any]) -> None:
        try:
            net = from_spec(spec)
        except SpecError as err:
            assert str(err).startswith("spec "), err  # every message names where in the spec it failed
            outcomes["spec_error"] += 1
            return
        outcomes["built"] += 1
        net.eval()
        x = torch.randn(2, *spec["input"])
        with torch.no_grad():
            out = net(x)
            feats = net.forward_features(x)
            assert tuple(out.shape) == (2, *net.output_shape), spec
            assert feats.shape[1] == net.num_features
            torch.testing.assert_close(net.forward_head(feats), out)

    check()
    # the generator is not degenerate: both outcomes happen often
    assert outcomes["built"] >= 25 and outcomes["spec_error"] >= 25, outcomes
