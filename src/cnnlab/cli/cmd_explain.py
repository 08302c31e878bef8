"""``cnnlab explain conv|pool|transposed|shape|params|rf``: textbook CNN arithmetic, step by step.

``conv``, ``pool`` and ``transposed`` trace a small matrix window by window (cnnlab.reference.explain);
``shape``, ``params`` and ``rf`` walk a layer stack written like ``"conv f=5 c=8; pool f=2; fc 10"``
(cnnlab.arith.explain). ``--format json`` prints ``{"output": ..., "steps": [...]}``. numpy and the
arithmetic modules are imported inside :func:`run`, so ``cnnlab --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli._values import negative_value_parser

NAME = "explain"
HELP = "Reproduce textbook CNN arithmetic step by step with your own numbers (conv, pool, shapes, RF)."

LAYER_LANGUAGE = """\
layer language (layers separated by ';'; optional 'NAME:' prefix; params=N is a claimed count to check):
  conv f=K [s=1] [p=0|same|valid] [d=1] [c=OUT] [g=1] [bias=1]   (K, s, p, d: 3 or HxW like 1x7)
  pool|maxpool|avgpool f=K [s=K] [p=0] [d=1] [ceil=0]     convT f=K [s=1] [p=0] [op=0] [d=1] [c=OUT]
  up [s=2] [mode=nearest|bilinear|bicubic]   fc N   gap   bn   relu   dropout   flatten
  p=same: output ceil(n/s) at any stride (TensorFlow's rule); d: PyTorch's dilation (d=1 no gaps, d=2: 3x3 covers 5x5)
input: H,W,C as the seeds write 32x32x3 (or --chw for PyTorch's C,H,W); 1-D: L,C; 3-D: D,H,W,C"""

EXAMPLES = """\
examples:
  cnnlab explain conv --input "1 2 3 4 5; 6 7 8 2 3; 2 5 9 9 5; 4 8 8 2 1" --kernel "1 1 1; 2 1 2; 3 2 1"
  cnnlab explain conv --input "1 2 3; 4 5 6; 7 8 9" --kernel "1 0; 0 -1" --flip
  cnnlab explain pool --input "3 3 2 1 0; 0 0 1 3 1; 3 1 2 2 3; 2 0 0 2 2; 2 0 0 0 1" --kernel 3 --stride 1
  cnnlab explain transposed --input "1 2; 3 4" --kernel "1 1; 1 1" --stride 2
  cnnlab explain shape "conv f=11 s=4 c=96; pool f=3 s=2; conv f=5 p=2 c=256" --input 227,227,3
  # seed 001's table as printed (its FC4 claims 850 parameters), checked row by row:
  cnnlab explain params "conv f=5 c=8 params=608; pool f=2 s=2; conv f=5 c=16 params=3216; pool f=2 s=2;
      FC3: fc 120 params=48120; FC4: fc 10 params=850" --input 32,32,3 --claimed-total 52794
  # why two stacked 3x3 convolutions see as far as one 5x5 with fewer parameters (2*9C^2 vs 25C^2):
  cnnlab explain rf --compare "conv f=3; relu; conv f=3" "conv f=5" --channels 64
  cnnlab explain rf "conv f=3 p=1; conv f=3 p=1; pool f=2 s=2" --input 32,32,3"""


# options whose value may start with '-' (a negative number, matrix or shape)
_VALUE_OPTIONS = frozenset(
    ["--input", "--kernel", "--bias", "--stride", "--padding", "--dilation", "--output-padding", "--channels"]
)
_ExplainParser = negative_value_parser(_VALUE_OPTIONS)


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", choices=["text", "json"], default="text", help="text for people, json for scripts"
    )


def _add_matrix_ops(p: argparse.ArgumentParser, kernel_help: str, stride_help: str = "int or H,W (default 1)") -> None:
    p.add_argument("--input", required=True, help='matrix "1 2 3; 4 5 6" (| between channels) or @FILE')
    p.add_argument("--kernel", required=True, help=kernel_help)
    p.add_argument("--stride", default="1", help=stride_help)
    _add_format(p)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cnnlab.arith.explain import COMPARE_SIZE as size  # pure Python: --help stays instant

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True, parser_class=_ExplainParser)
    raw = argparse.RawDescriptionHelpFormatter

    text = "a convolution, window by window"
    conv = sub.add_parser("conv", help=text, description=text, epilog=EXAMPLES, formatter_class=raw)
    _add_matrix_ops(
        conv,
        'matrix "1 0; 0 1", | between channels, || between filters, or @FILE (for a one-channel input, '
        '"1 0; 0 1 | 0 1; 1 0" is two filters)',
    )
    conv.add_argument("--padding", default="0", help="int, H,W, top,bottom,left,right, same or valid (default 0)")
    conv.add_argument("--dilation", default="1", help="int or H,W (default 1)")
    conv.add_argument(
        "--padding-mode", choices=["zeros", "reflect", "replicate"], default="zeros",
        help="what the padding holds (default zeros)",
    )  # fmt: skip
    conv.add_argument("--groups", type=int, default=1, help="split channels and filters into groups (default 1)")
    conv.add_argument("--bias", default="0", help="one number, or one per filter separated by commas (default 0)")
    conv.add_argument(
        "--flip",
        action="store_true",
        help="textbook convolution (kernel rotated 180 degrees), not cross-correlation",
    )

    text = "max / average / sum pooling, window by window"
    pool = sub.add_parser("pool", help=text, description=text, epilog=EXAMPLES, formatter_class=raw)
    _add_matrix_ops(pool, "window size: int or H,W", "int or H,W (default: the window size, as in PyTorch)")
    pool.set_defaults(stride=None)
    pool.add_argument("--padding", default="0", help="int or H,W (at most half the window; default 0)")
    pool.add_argument("--mode", choices=["max", "avg", "sum"], default="max", help="(default max)")
    pool.add_argument("--ceil-mode", action="store_true", help="keep a last partial window (PyTorch's rule)")

    text = "a transposed convolution as zero insertion + convolution"
    tr = sub.add_parser("transposed", help=text, description=text, epilog=EXAMPLES, formatter_class=raw)
    _add_matrix_ops(
        tr,
        'matrix "1 1; 1 1", | between input channels, or @FILE; for several filters PyTorch\'s order '
        "(C_in, F): || between input channels, | between filters (so for a one-channel input | separates "
        "filters)",
    )
    tr.add_argument("--padding", default="0", help="int or H,W: rows/columns cropped from each side (default 0)")
    tr.add_argument("--output-padding", default="0", help="int or H,W (smaller than stride or dilation; default 0)")
    tr.add_argument("--dilation", default="1", help="int or H,W (default 1)")

    for name, text in (
        ("shape", "output shape of every layer of a stack, with the size formula"),
        ("params", "parameters of every layer, the total, and a check of a table's claimed counts"),
        ("rf", "receptive field (n, jump, RF, start) of every layer; --compare two stacks"),
    ):
        p = sub.add_parser(name, help=text, description=text, epilog=f"{LAYER_LANGUAGE}\n\n{EXAMPLES}",
                           formatter_class=raw)  # fmt: skip
        p.add_argument("spec", nargs="?", help='layers, e.g. "conv f=5 c=8; pool f=2; fc 10", or @FILE')
        p.add_argument("--input", help="input shape H,W,C such as 32,32,3 (C,H,W with --chw)")
        p.add_argument("--chw", action="store_true", help="read --input as C,H,W (PyTorch order)")
        _add_format(p)
        if name == "params":
            p.add_argument("--claimed-total", help="a table's printed total, to check (e.g. 52794 or 52,794)")
        if name == "rf":
            p.add_argument(
                "--compare",
                nargs=2,
                metavar=("SPEC_A", "SPEC_B"),
                help=f"compare two stacks (instead of SPEC) on --input, by default {size}x{size}xC",
            )
            p.add_argument(
                "--channels",
                type=int,
                help="C in and out of every conv for --compare without --input (default 64)",
            )


def _text(value: str, option: str) -> str:
    """A value given inline or as @FILE; an unreadable file is a one-paragraph error naming ``option``."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    example = "layers.txt" if option.startswith("SPEC") else "matrix.txt"
    fix = f"Write the value inline, or {option} @FILE with FILE a UTF-8 text file (e.g. {option} @{example})."
    if not value[1:]:
        raise ValueError(f"{option} '@' names no file: @ must be followed by a file name. {fix}")
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        problem = "is a directory"
    except FileNotFoundError:
        problem = "does not exist"
    except UnicodeDecodeError as err:
        problem = f"is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"
    except OSError as err:
        problem = f"cannot be read ({err.strerror or err})"
    raise ValueError(f"{option} {value}: the file {str(path)!r} {problem}. {fix}")


def _ints(value: str, option: str, counts: tuple[int, ...] = (1, 2)) -> Any:
    """``"2"`` -> 2, ``"2,1"`` / ``"2x1"`` -> (2, 1); anything else is a one-paragraph error."""
    parts = [p for p in re.split(r"[,x\s]+", value.strip()) if p]
    try:
        nums = tuple(int(p) for p in parts)
    except ValueError:
        nums = ()
    if len(nums) not in counts:
        shapes = " or ".join({1: "an int", 2: "H,W", 4: "top,bottom,left,right"}[c] for c in counts)
        raise ValueError(f"{option} must be {shapes}; received {option} {value!r}. Write e.g. {option} 1.")
    return nums[0] if len(nums) == 1 else nums


def _bias(value: str) -> float | list[float]:
    try:
        numbers = [float(b) for b in value.split(",")]
    except ValueError:
        raise ValueError(
            f"--bias must be one number or one per filter separated by commas; received --bias {value!r}. "
            "Write e.g. --bias 1 or --bias 1,-0.5."
        ) from None
    return numbers if len(numbers) > 1 else numbers[0]


def _padding(value: str) -> Any:
    if value.strip().lower() in ("same", "valid"):
        return value.strip().lower()
    try:
        p = _ints(value, "--padding", (1, 2, 4))
    except ValueError:
        raise ValueError(
            f"--padding must be an int, H,W, top,bottom,left,right, same or valid; received --padding "
            f"{value!r}. Write e.g. --padding 1 or --padding same."
        ) from None
    if isinstance(p, tuple) and len(p) == 4:
        return ((p[0], p[1]), (p[2], p[3]))
    return p


def _explain_matrix(args: argparse.Namespace) -> dict[str, Any]:
    from cnnlab.reference.explain import explain_conv, explain_pool, explain_transposed

    if args.what == "pool":
        kernel = _ints(args.kernel, "--kernel")
        padding = _ints(args.padding, "--padding")
        return explain_pool(
            _text(args.input, "--input"),
            kernel,
            stride=_ints(args.stride, "--stride") if args.stride is not None else None,  # None: the window
            padding=padding,
            mode=args.mode,
            ceil_mode=args.ceil_mode,
        )
    stride = _ints(args.stride, "--stride")  # conv and transposed default to "1"
    if args.what == "transposed":
        return explain_transposed(
            _text(args.input, "--input"), _text(args.kernel, "--kernel"), stride=stride,
            padding=_ints(args.padding, "--padding"),
            output_padding=_ints(args.output_padding, "--output-padding"),
            dilation=_ints(args.dilation, "--dilation"),
        )  # fmt: skip
    bias = _bias(args.bias)
    common = {
        "stride": stride,
        "padding": _padding(args.padding),
        "dilation": _ints(args.dilation, "--dilation"),
        "padding_mode": args.padding_mode,
        "flip": args.flip,
    }
    x, w = _text(args.input, "--input"), _text(args.kernel, "--kernel")
    return explain_conv(x, w, bias=bias, groups=args.groups, **common)


def _spec_text(value: str | None, what: str, option: str) -> str:
    """The layer spec (inline or @FILE); one holding no layer (empty, or only ';') is an error."""
    text = _text(value, option) if value else ""
    if not re.sub(r"[;\s]", "", text):
        shown = "" if value is None else f" ({option} {value!r} holds no layer, only separators or spaces)"
        raise ValueError(
            f"explain {what} needs a layer spec{shown}, e.g. cnnlab explain {what} "
            '"conv f=5 c=8; pool f=2 s=2; fc 10" --input 32,32,3 (see --help for the layer language).'
        )
    return text


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    from cnnlab.arith import explain as ex

    if args.spec:
        raise ValueError(
            f"explain rf takes either one SPEC or --compare SPEC_A SPEC_B, not both; received the SPEC "
            f"{args.spec!r} and --compare. Drop the SPEC, or drop --compare to see one stack's table."
        )
    if args.channels is not None and args.channels < 1:
        raise ValueError(
            f"--channels must be a positive whole number (the channels C in and out of every conv); "
            f"received --channels {args.channels}. Write e.g. --channels 64."
        )
    if args.channels is not None and args.input:
        raise ValueError(
            f"--channels is for --compare without --input; with --input the stacks take C from the input. "
            f"Received --input {args.input} and --channels {args.channels}: drop --channels, or put the "
            "channels in --input."
        )
    spec_a, spec_b = (_spec_text(v, "rf", o) for v, o in zip(args.compare, ("SPEC_A", "SPEC_B")))
    layout = "chw" if args.chw else "hwc"
    return ex.compare_rf(spec_a, spec_b, channels=args.channels, input_shape=args.input, layout=layout)


def _explain_stack(args: argparse.Namespace) -> dict[str, Any]:
    from cnnlab.arith import explain as ex

    if args.what == "rf" and args.compare:
        return _compare(args)
    spec = _spec_text(args.spec, args.what, "SPEC")
    if not args.input:
        raise ValueError(
            f"explain {args.what} needs --input, the input shape as H,W,C (e.g. --input 32,32,3), or C,H,W "
            "with --chw."
        )
    layout = "chw" if args.chw else "hwc"
    if args.what == "shape":
        return ex.explain_shape(spec, args.input, layout=layout)
    if args.what == "rf":
        return ex.explain_rf(spec, args.input, layout=layout)
    claimed = None
    if args.claimed_total is not None:
        digits = args.claimed_total.replace(",", "").replace("_", "")
        if not digits.isdigit():
            raise ValueError(
                f"--claimed-total must be a whole number (a table's printed total, commas allowed); received "
                f"--claimed-total {args.claimed_total!r}. Write e.g. --claimed-total 52794 or --claimed-total 52,794."
            )
        claimed = int(digits)
    return ex.explain_params(spec, args.input, layout=layout, claimed_total=claimed)


def run(args: argparse.Namespace) -> int:
    if args.what in ("conv", "pool", "transposed"):
        result = _explain_matrix(args)
    else:
        result = _explain_stack(args)
    if args.format == "json":
        json.dump({k: v for k, v in result.items() if k != "lines"}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(result["lines"]))
    return 0
