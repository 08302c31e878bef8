"""Design lint: mistakes the numbers reveal, each a rule with a name, a level and a one-line why.

Levels: ``error`` (some weights can never learn: ``cnnlab lint`` exits 1), ``warning`` (wasted
parameters or compute, misaligned features) and ``info`` (worth knowing). :data:`RULES` lists them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch.nn as nn

from cnnlab.analysis import nodes as K
from cnnlab.analysis.capture import Graph, Node
from cnnlab.analysis.receptive import RFState
from cnnlab.analysis.report import LintWarning, ModelReport
from cnnlab.arith import axis_names

RULES: dict[str, str] = {
    "bias-before-bn": "a conv/linear bias right before BatchNorm is cancelled by BN's mean subtraction",
    "rf-smaller-than-input": "the output's receptive field is smaller than the input: no unit sees it all",
    "rf-exceeds-input": "receptive fields far beyond the input: later layers mostly see padding",
    "unread-border": "the stride does not divide the padded span: the last rows/columns are never read",
    "even-kernel-same": "an even kernel with 'same' padding pads one side more and shifts the centre",
    "dilation-gridding": "stacked dilation rates with a common factor > 1 sample a sparse grid (holes)",
    "pool-kernel-lt-stride": "a pooling kernel smaller than its stride skips input rows/columns",
    "map-smaller-than-kernel": "the feature map is smaller than the kernel: taps read padding only",
    "fc-dominates-params": "fully connected layers hold most of the parameters",
    "dropout-before-bn": "dropout before BatchNorm shifts the variance BN sees between train and test",
    "channels-shrink-with-resolution": "channels shrink while resolution shrinks: an information bottleneck",
    "rf-misaligned": "merged branches sit on different grids (jump or centre)",
}

_PASS_THROUGH = (K.ELEMENTWISE, K.NORM, K.DROPOUT)


def _consumers(graph: Graph) -> list[list[int]]:
    users: list[list[int]] = [[] for _ in graph.nodes]
    for i, node in enumerate(graph.nodes):
        for j in node.inputs:
            users[j].append(i)
    return users


def _spatial_in(node: Node, nd: int) -> tuple[int, ...]:
    shape = node.input_shapes[0] if node.input_shapes else ()
    return tuple(shape[-nd:]) if len(shape) >= nd + 2 else ()


def _windowed(graph: Graph) -> Iterator[tuple[Node, tuple[int, ...]]]:
    """Conv and pooling nodes with their input grid."""
    for node in graph.nodes:
        g = node.geometry
        sp = _spatial_in(node, graph.ndim)
        if g.kind in (K.CONV, K.POOL) and len(g.k) == graph.ndim and len(sp) == graph.ndim:
            yield node, sp


def bias_before_bn(graph: Graph, users: list[list[int]]) -> Iterator[LintWarning]:
    for i, node in enumerate(graph.nodes):
        if node.geometry.kind in (K.CONV, K.LINEAR) and node.geometry.bias and len(users[i]) == 1:
            nxt = graph.nodes[users[i][0]]
            if isinstance(nxt.module, nn.modules.batchnorm._BatchNorm):
                yield LintWarning(
                    "bias-before-bn",
                    "warning",
                    node.name,
                    f"its bias ({node.geometry.out_ch} params) is cancelled by {nxt.name} "
                    "(BatchNorm subtracts the mean and adds its own shift); use bias=False",
                )


# what one step along each named spatial axis is, for messages ("2 rows", not "2 along axis 0")
_UNITS = {"H": "row", "W": "column", "D": "slice", "L": "position"}


def _axis(nd: int, axis: int) -> tuple[str, str]:
    """The name of spatial axis ``axis`` (H, W, D or L) and what its units are called."""
    name = axis_names(nd)[axis]
    return name, _UNITS.get(name, "position")


def unread_border(graph: Graph) -> Iterator[LintWarning]:
    for node, sp in _windowed(graph):
        g = node.geometry
        if g.ceil_mode:
            continue
        for axis, (n, k, s, (pl, pr), d) in enumerate(zip(sp, g.k, g.s, g.p, g.d)):
            r = (n + pl + pr - d * (k - 1) - 1) % s  # rows of the padded span the last window never reaches
            if r == 0:
                continue
            real = max(0, r - pr)
            level = "warning" if real else "info"
            name, unit = _axis(graph.ndim, axis)
            ke = d * (k - 1) + 1
            skips = f"; the {ke}-pixel window with stride {s} also skips {s - ke} {unit}(s) between windows"
            gaps = skips if ke < s else ""
            what = (
                f"the last {real} input {unit}(s) are never read{gaps}"
                if real
                else (
                    f"only padding is skipped, so the effective padding is ({pl}, {pr - r}), not ({pl}, {pr})"
                )
            )
            yield LintWarning(
                "unread-border",
                level,
                node.name,
                f"{name}: (n + pl + pr - d(k-1) - 1) mod s = ({n} + {pl} + {pr} - "
                f"{d * (k - 1)} - 1) mod {s} = {r}: {what}",
            )
            break


def even_kernel_same(graph: Graph) -> Iterator[LintWarning]:
    for node in graph.nodes:
        g = node.geometry
        if g.kind == K.CONV and g.same:
            even = [d * (k - 1) + 1 for k, d in zip(g.k, g.d) if (d * (k - 1) + 1) % 2 == 0]
            if even:
                yield LintWarning(
                    "even-kernel-same",
                    "warning",
                    node.name,
                    f"effective kernel {list(g.k)} is even: 'same' pads one pixel more on the "
                    "right/bottom, shifting every output half a pixel; use an odd kernel",
                )


def _previous_conv(graph: Graph, i: int) -> int | None:
    """The conv feeding node ``i`` through single-input pass-through ops (BN, ReLU, dropout)."""
    node = graph.nodes[i]
    while len(node.inputs) == 1:
        j = node.inputs[0]
        prev = graph.nodes[j]
        if prev.geometry.kind == K.CONV:
            return j
        if prev.geometry.kind not in _PASS_THROUGH:
            return None
        node = prev
    return None


def dilation_gridding(graph: Graph) -> Iterator[LintWarning]:
    chains: dict[int, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        g = node.geometry
        if g.kind != K.CONV or max(g.d, default=1) <= 1 or max(g.k, default=1) <= 1:
            continue
        chain = [i]
        j = _previous_conv(graph, i)
        while j is not None and max(graph.nodes[j].geometry.d, default=1) > 1 and graph.nodes[j].geometry.k:
            chain.insert(0, j)
            j = _previous_conv(graph, j)
        chains[i] = chain
    inner = {j for chain in chains.values() for j in chain[:-1]}
    for i, chain in chains.items():
        if i in inner or len(chain) < 2:
            continue
        rates = [graph.nodes[j].geometry.d for j in chain]
        for axis in range(len(rates[0])):
            common = math.gcd(*(r[axis] for r in rates))
            if common > 1:
                yield LintWarning(
                    "dilation-gridding",
                    "warning",
                    graph.nodes[i].name,
                    f"stacked dilation rates {[r[axis] for r in rates]} share the factor "
                    f"{common}: outputs only see every {common}th input pixel (gridding); use "
                    "rates without a common factor, e.g. 1, 2, 3",
                )
                break


def pool_kernel_lt_stride(graph: Graph) -> Iterator[LintWarning]:
    for node, _ in _windowed(graph):
        g = node.geometry
        if g.kind == K.POOL and any(k < s for k, s in zip(g.k, g.s)):
            yield LintWarning(
                "pool-kernel-lt-stride",
                "warning",
                node.name,
                f"kernel {list(g.k)} < stride {list(g.s)}: the rows/columns between windows "
                "never reach the output; use kernel >= stride",
            )


def _dead_taps(n: int, out: int, k: int, s: int, pl: int, d: int) -> int:
    # tap t reads input o*s - pl + t*d for output o; dead if no output puts it inside [0, n)
    return sum(1 for t in range(k) if not any(0 <= o * s - pl + t * d < n for o in range(out)))


def map_smaller_than_kernel(graph: Graph) -> Iterator[LintWarning]:
    nd = graph.ndim
    for node, sp in _windowed(graph):
        g = node.geometry
        out = node.output_shape[-nd:]
        for axis, (n, o, k, s, (pl, _), d) in enumerate(zip(sp, out, g.k, g.s, g.p, g.d)):
            ke = d * (k - 1) + 1
            if n >= ke:
                continue
            dead = _dead_taps(n, o, k, s, pl, d)
            if dead and g.kind == K.CONV:
                yield LintWarning(
                    "map-smaller-than-kernel",
                    "error",
                    node.name,
                    f"{_axis(nd, axis)[0]}: the {n}-pixel map is smaller than the {ke}-pixel kernel and {dead} "
                    f"of its {k} taps only ever read padding, so their weights never learn; use a "
                    "smaller kernel or downsample less",
                )
            else:
                yield LintWarning(
                    "map-smaller-than-kernel",
                    "warning",
                    node.name,
                    f"{_axis(nd, axis)[0]}: the {n}-pixel map is smaller than the {ke}-pixel kernel; most "
                    "taps read padding",
                )
            break


def fc_dominates(graph: Graph, report: ModelReport) -> Iterator[LintWarning]:
    linear = [r for r in report.layers if r.kind == K.LINEAR]
    fc = sum(r.params for r in linear)
    total = report.totals.params
    if total and linear and fc / total > 0.5:
        biggest = max(linear, key=lambda r: r.params)
        yield LintWarning(
            "fc-dominates-params",
            "info",
            biggest.name,
            f"fully connected layers hold {fc:,} of {total:,} parameters ({100 * fc / total:.0f}%; "
            f"{biggest.name} alone {biggest.params:,}) while convolutions do most of the work; "
            "global average pooling before a small head saves them",
        )


def dropout_before_bn(graph: Graph, users: list[list[int]]) -> Iterator[LintWarning]:
    for i, node in enumerate(graph.nodes):
        if node.geometry.kind != K.DROPOUT:
            continue
        j = i
        while len(users[j]) == 1:
            j = users[j][0]
            nxt = graph.nodes[j]
            if isinstance(nxt.module, nn.modules.batchnorm._BatchNorm):
                yield LintWarning(
                    "dropout-before-bn",
                    "warning",
                    node.name,
                    f"dropout feeds {nxt.name}: BN's running variance is learnt with dropout on "
                    "and used with it off (variance shift); put dropout after the last BN",
                )
                break
            if nxt.geometry.kind not in (K.ELEMENTWISE, K.CONV, K.LINEAR, K.POOL):
                break  # linear ops and activations carry the shifted variance on to the BN


def _feeds_concat(graph: Graph, users: list[list[int]], i: int) -> bool:
    """True when node ``i`` is one branch of a concatenation (through pass-through ops)."""
    while len(users[i]) == 1:
        i = users[i][0]
        nxt = graph.nodes[i]
        if nxt.geometry.kind == K.MERGE and nxt.type in ("cat", "concat", "concatenate", "stack"):
            return True
        if nxt.geometry.kind not in _PASS_THROUGH:
            return False
    return False


def channels_shrink(graph: Graph, users: list[list[int]]) -> Iterator[LintWarning]:
    index = {id(node): i for i, node in enumerate(graph.nodes)}
    for node, sp in _windowed(graph):
        g = node.geometry
        out_sp = node.output_shape[-graph.ndim :]
        # a strided conv lowers the resolution; a 'valid' conv's lost border (16 -> 14) does not
        downsamples = any(s > 1 for s in g.s) and math.prod(out_sp) < math.prod(sp)
        shrinks = g.kind == K.CONV and downsamples and g.out_ch < g.in_ch
        # one branch of a concat is not a bottleneck: the concatenated map holds the channels
        if shrinks and not _feeds_concat(graph, users, index[id(node)]):
            yield LintWarning(
                "channels-shrink-with-resolution",
                "warning",
                node.name,
                f"{g.in_ch} -> {g.out_ch} channels while the map shrinks {list(sp)} -> "
                f"{list(out_sp)}: features are lost twice; keep or raise the channel count",
            )


def receptive_rules(graph: Graph, report: ModelReport, states: list[RFState | None]) -> Iterator[LintWarning]:
    sp_in = report.input_shape[1:]
    # the output's own field: None (not judged) after a layer cnnlab does not follow, whose field the last
    # known one before it says nothing about
    last = states[-1] if states else None
    # an output flattened but not yet mixed (a feature vector for a dense head) is not judged
    flat = len(graph.nodes[-1].output_shape) < len(sp_in) + 2 and last is not None and last.spatial
    if last is not None and not flat and any(a < n for a, n in zip(last.hi.size, sp_in)):
        yield LintWarning(
            "rf-smaller-than-input",
            "warning",
            graph.nodes[-1].name,
            f"the output's receptive field {list(last.hi.size)} is smaller than the input "
            f"{list(sp_in)}: no output unit sees the whole image; add downsampling or global pooling",
        )
    far = [
        (node, s)
        for node, s in zip(graph.nodes, states)
        if s is not None
        and node.geometry.kind in (K.CONV, K.POOL)
        and any(a > 2 * n for a, n in zip(s.hi.size, sp_in))
    ]
    if far:
        node, s = far[0]
        yield LintWarning(
            "rf-exceeds-input",
            "info",
            node.name,
            f"receptive field {list(s.hi.size)} already exceeds twice the input {list(sp_in)} here "
            f"({len(far)} nodes from here on): these layers mostly see padding",
        )


def run_rules(graph: Graph, report: ModelReport, states: list[RFState | None]) -> list[LintWarning]:
    """Every lint rule over a captured graph and its report, in graph order per rule."""
    users = _consumers(graph)
    rules: list[Callable[[], Iterator[LintWarning]]] = [
        lambda: bias_before_bn(graph, users),
        lambda: unread_border(graph),
        lambda: even_kernel_same(graph),
        lambda: dilation_gridding(graph),
        lambda: pool_kernel_lt_stride(graph),
        lambda: map_smaller_than_kernel(graph),
        lambda: fc_dominates(graph, report),
        lambda: dropout_before_bn(graph, users),
        lambda: channels_shrink(graph, users),
        lambda: receptive_rules(graph, report, states),
    ]
    return [w for rule in rules for w in rule()]
