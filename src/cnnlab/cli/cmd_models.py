"""``cnnlab models [PATTERN] [--format text|json]``: list the registered models.

Each row shows what the model declares: family, task, parameters, multiply-adds and receptive field
at its default input size. The model registry (and with it torch) is imported inside :func:`run`, so
``cnnlab --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "models"
HELP = "List the registered models: family, task, parameters, MACs, receptive field, input size."

EXAMPLES = """\
examples:
  cnnlab models                  # every model
  cnnlab models resnet           # a plain word matches anywhere in the name (*resnet*)
  cnnlab models "vgg1?_bn"       # fnmatch wildcards: * ? [seq]
  cnnlab models --format json    # a JSON list of dicts, one per model"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        metavar="PATTERN",
        help="fnmatch pattern over model names; a word without wildcards matches anywhere (default: all)",
    )
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="text for people, json for scripts"
    )


def _glob(pattern: str) -> str:
    """A plain word becomes a substring match; a pattern with wildcards is used as written."""
    return pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"


def model_rows(pattern: str = "*") -> list[dict[str, Any]]:
    """One JSON-ready dict per registered model matching ``pattern``.

    >>> model_rows("lenet5")[0]["params"]  # doctest: +SKIP
    61706
    """
    from cnnlab.models import list_models, model_info

    names = list_models(_glob(pattern))
    if not names:
        everything = list_models()
        families = sorted({model_info(n).family for n in everything})
        raise ValueError(
            f"PATTERN {pattern!r} matches none of the {len(everything)} registered models "
            f"(families: {', '.join(families)}). Use a shorter word such as 'resnet', or a wildcard "
            "pattern such as 'vgg*'; run `cnnlab models` to list them all."
        )
    rows = []
    for name in names:
        info = model_info(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "task": info.task,
                "input_size": list(info.input_size),
                "num_classes": info.num_classes,
                "params": info.params,
                "macs": info.macs,
                "rf": info.rf,
                "description": info.description,
            }
        )
    return rows


def _si(value: int | None) -> str:
    """Multiply-adds as people read them: 416.5K, 4.09G."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}" if unit == "G" else f"{value / scale:.1f}{unit}"
    return str(value)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} registered model{'s' if len(rows) != 1 else ''}", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("RF", justify="right", no_wrap=True)
    table.add_column("input (CxHxW)", justify="right", no_wrap=True)
    table.add_column("classes", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            r["name"],
            r["family"],
            r["task"],
            "-" if r["params"] is None else f"{r['params']:,}",
            _si(r["macs"]),
            "-" if r["rf"] is None else str(r["rf"]),
            "x".join(str(v) for v in r["input_size"]),
            str(r["num_classes"]),
        )
    Console(width=120).print(table)
    print("params: sum(p.numel()); MACs: conv + linear multiply-adds at the input size; RF: receptive field")
    print("of the last spatial feature map (pixels). All at the default number of classes.")


def run(args: argparse.Namespace) -> int:
    rows = model_rows(args.pattern)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return 0
