"""Entry point of the ``cnnlab`` console script.

Sub-commands are discovered from the ``cnnlab.cli.cmd_*`` modules, so adding a command never edits
this file. User mistakes (:class:`cnnlab.errors.CnnlabError` and ``ValueError``) are printed as one
paragraph with exit code 2; set ``CNNLAB_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import textwrap
from collections.abc import Sequence
from types import ModuleType

import cnnlab
from cnnlab.errors import CnnlabError, TrainingInterrupted

EXIT_USAGE = 2


def _command_modules() -> list[ModuleType]:
    import cnnlab.cli as pkg

    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("cmd_"))
    return [importlib.import_module(f"cnnlab.cli.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Design, understand, train, measure and show convolutional neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {cnnlab.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def format_error(err: BaseException, width: int | None = None) -> str:
    """One paragraph for a user-facing error: wrapped at ``width`` columns, or one line when None.

    >>> format_error(ValueError("stride must be >= 1;    received stride=0."))
    'error: stride must be >= 1; received stride=0.'
    """
    text = f"error: {' '.join(str(err).split()) or type(err).__name__}"
    if width is None:  # pipes, logs and tests get one line that grep and 'in' checks can rely on
        return text
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except (CnnlabError, ValueError, FileNotFoundError) as err:
        if os.environ.get("CNNLAB_DEBUG"):
            raise
        print(format_error(err, width=100 if sys.stderr.isatty() else None), file=sys.stderr)
        return EXIT_USAGE
    except TrainingInterrupted as err:  # training said where its state is saved and how to resume
        return 128 + err.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cnnlab explain ... | head`): stop quietly, as cat and grep do. Point
        # stdout at devnull so the interpreter's final flush does not raise again (Python docs, signal).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
