"""Option values that start with '-' (``--bias -1,2``, ``--unit -1,0``): argparse takes such a word for an
option unless it is a lone negative number (-1, -.5), and fails with "expected one argument"."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence

__all__ = ["attach_negative_values", "negative_value_parser"]


def attach_negative_values(argv: list[str], options: Iterable[str]) -> list[str]:
    """``["--bias", "-1,2"]`` -> ``["--bias=-1,2"]`` for the ``options`` that take such values: a value that
    starts with '-' and a digit or '.' is attached to its option.

    >>> attach_negative_values(["--kernel", "-1 0; 0 1", "--flip", "--bias", "-.5,2"], {"--kernel", "--bias"})
    ['--kernel=-1 0; 0 1', '--flip', '--bias=-.5,2']
    """
    takes = frozenset(options)
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":  # everything after it is positional
            return out + argv[i:]
        if word in takes and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def negative_value_parser(options: Iterable[str]) -> type[argparse.ArgumentParser]:
    """An ``ArgumentParser`` class (for ``add_subparsers(parser_class=...)``) that reads negative values of
    ``options`` (see :func:`attach_negative_values`)."""
    takes = frozenset(options)

    class _Parser(argparse.ArgumentParser):
        def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
        ) -> tuple[argparse.Namespace, list[str]]:
            words = attach_negative_values(list(sys.argv[1:] if args is None else args), takes)
            return super().parse_known_args(words, namespace)

    return _Parser
