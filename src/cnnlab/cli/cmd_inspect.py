"""``cnnlab inspect``: shapes, params, MACs, memory and receptive fields of a model, layer by layer."""

from __future__ import annotations

import argparse

NAME = "inspect"
HELP = "Per-layer shapes, parameters, MACs, activation memory and receptive fields of a model."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="registered model name, spec file, or file.py:factory")
    parser.add_argument("--input", default=None, help="input size C,H,W (default: the model's declared size)")
    parser.add_argument(
        "--format", default="text", choices=["text", "md", "json", "csv"], help="output format (default text)"
    )
    parser.add_argument(
        "--depth", type=int, default=None,
        help="fold modules nested deeper than N levels into one row each (0: top-level modules only; "
        "default: every layer; text, md and csv only)",
    )  # fmt: skip


def resolve(args: argparse.Namespace) -> tuple[object, str, tuple[int, ...]]:
    """(model, name, input shape) from TARGET and --input; shared with ``cnnlab lint``."""
    from cnnlab.analysis import check_input_shape
    from cnnlab.analysis.target import load_target

    target = load_target(args.target)
    if args.input is None and target.input_size is None:
        raise ValueError(
            f"--input is required for {args.target!r}: it declares no input size. Pass --input C,H,W, "
            "for example --input 3,224,224."
        )
    shape = check_input_shape(args.input) if args.input is not None else tuple(target.input_size or ())
    declared = target.input_size
    if declared is not None and len(shape) != len(declared):
        layout = {2: "C,L", 3: "C,H,W", 4: "C,D,H,W"}.get(len(declared), f"{len(declared)} numbers")
        if len(shape) == len(declared) + 1 and shape[0] == 1:
            sample = ",".join(map(str, shape[1:]))
            fix = f"--input is one sample without the batch axis: drop the leading 1, --input {sample}."
        elif len(shape) > len(declared):
            fix = f"Give {layout} only (one sample, no batch axis), e.g. --input {','.join(map(str, declared))}."
        else:
            fix = f"Give the channels too, e.g. --input {','.join(map(str, declared))}."
        raise ValueError(
            f"--input for {args.target!r} must have {len(declared)} numbers ({layout}), like its declared "
            f"size {','.join(map(str, declared))}; received {args.input!r} ({len(shape)} numbers). {fix}"
        )
    return target.model, target.name, shape


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis import analyze
    from cnnlab.analysis.render import render

    model, name, shape = resolve(args)
    report = analyze(model, shape, name=name)  # type: ignore[arg-type]
    print(render(report, args.format, args.depth), end="")
    return 0
