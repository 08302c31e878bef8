"""Checks on where pictures and reports go, made before any work: one paragraph instead of a traceback.

An output path can fail in four ways: it is a folder, it lies under a regular file (``run/config.json/x.png``),
its folder cannot be written (``/proc``, a read-only disk), or its suffix promises another format
(PNG data in ``out.txt``). :func:`check_out_file` and :func:`check_out_dir` catch all four and name the
option, the path, the reason and a fix. They create nothing: the first missing folder is only probed
by creating (and removing) a temporary file in the nearest folder that exists.

>>> check_out_file("picture.txt", suffixes=(".png",))
Traceback (most recent call last):
ValueError: --out 'picture.txt' must end in .png (the file is written in that format); ... Use --out picture.png.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["check_out_dir", "check_out_file"]


def _nearest_existing(path: Path) -> Path:
    # the path itself or its closest ancestor that exists ("." for a relative path whose folders are all new)
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _subject(option: str, path: Path, given: bool) -> str:
    return f"{option} {str(path)!r}" if given else f"the default output {str(path)!r} (no {option} given)"


def _creation_problem(subject: str, folder: Path, option: str, example: str) -> str | None:
    """Why no file can be created in ``folder`` (which may not exist yet), or None."""
    anchor = _nearest_existing(folder)
    if not anchor.is_dir():
        return (
            f"{subject} lies under {str(anchor)!r}, which is a file, not a folder, so nothing can be created "
            f"there. Choose a path in a folder, e.g. {option} {anchor.parent / example}."
        )
    try:
        with tempfile.NamedTemporaryFile(dir=anchor, prefix=".cnnlab-probe-"):
            pass
    except OSError as err:
        return (
            f"{subject} cannot be written: creating a file in {str(anchor)!r} failed ({err.strerror or err}). "
            f"Choose a folder you can write to, e.g. {option} {Path.cwd() / example}."
        )
    return None


def check_out_file(
    path: str | os.PathLike[str],
    *,
    option: str = "--out",
    suffixes: Sequence[str] = (".png",),
    given: bool = True,
    example: str = "picture",
) -> Path:
    """``path`` as a Path when a ``suffixes`` file can be written there; else ValueError naming ``option``.

    ``given`` is False for a default path the user did not type (the message then says so); ``example``
    is the file stem suggested inside a folder.

    >>> check_out_file("pictures/k.png")
    PosixPath('pictures/k.png')
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(
            f"{_subject(option, p, given)} is a folder; {option} takes a file name. "
            f"Use e.g. {option} {p / (example + suffixes[0])}."
        )
    if p.suffix.lower() not in suffixes:
        wanted = " or ".join(suffixes)
        raise ValueError(
            f"{_subject(option, p, given)} must end in {wanted} (the file is written in that format); received "
            f"{f'the suffix {p.suffix!r}' if p.suffix else 'no suffix'}. Use {option} {p.with_suffix(suffixes[0])}."
        )
    problem = _creation_problem(_subject(option, p, given), p.parent, option, p.name)
    if problem:
        raise ValueError(problem)
    return p


def check_out_dir(path: str | os.PathLike[str], *, option: str = "--frames-dir", content: str = "files") -> Path:
    """``path`` as a Path when it is (or can become) a writable folder; else ValueError naming ``option``.

    >>> check_out_dir("frames")
    PosixPath('frames')
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(
            f"{option} {str(p)!r} is a file; {option} takes a folder for the {content}. "
            f"Use e.g. {option} {p.parent / (p.stem + '-frames')}."
        )
    problem = _creation_problem(_subject(option, p, True), p, option, p.name)
    if problem:
        raise ValueError(problem)
    return p
