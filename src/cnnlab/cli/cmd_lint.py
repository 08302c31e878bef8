"""``cnnlab lint``: design warnings for a model; exit code 1 when any has level ``error``."""

from __future__ import annotations

import argparse

NAME = "lint"
HELP = "Design warnings for a model (exit code 1 if any has level error)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="registered model name, spec file, or file.py:factory")
    parser.add_argument("--input", default=None, help="input size C,H,W (default: the model's declared size)")
    parser.add_argument("--format", default="text", choices=["text", "json"], help="output format (default text)")


def run(args: argparse.Namespace) -> int:
    import json

    from cnnlab.analysis import analyze
    from cnnlab.analysis.lint import RULES
    from cnnlab.cli.cmd_inspect import resolve

    model, name, shape = resolve(args)
    report = analyze(model, shape, name=name)  # type: ignore[arg-type]
    warnings = report.warnings
    if args.format == "json":
        doc = {"model": name, "input_shape": list(shape), "warnings": [w.to_dict() for w in warnings]}
        print(json.dumps(doc, indent=2))
    else:
        print(f"{name} at {'x'.join(map(str, shape))}: {len(warnings)} finding(s)")
        for w in warnings:
            why = RULES.get(w.rule, "")
            print(f"[{w.level}] {w.rule} at {w.layer}: {w.message}" + (f"\n    why: {why}" if why else ""))
    return 1 if any(w.level == "error" for w in warnings) else 0
