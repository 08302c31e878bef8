"""Where dataset files live, and how a missing one is downloaded safely.

Files are looked up, in order, in the ``data_dir`` argument (``--data-dir``), ``$CNNLAB_DATA``, the
user cache (``$XDG_CACHE_HOME/cnnlab/<name>``, default ``~/.cache/cnnlab/<name>``) and system
folders such as the Debian package's ``/usr/share/datasets/<name>``. A download streams into a
temporary file in the destination folder while hashing, checks the published checksum, fsyncs,
then renames: an interrupted download never leaves a half-written file under the real name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from cnnlab.errors import DataError

CHUNK = 1 << 16  # bytes read per network call
TIMEOUT_S = 30.0  # seconds without data before a download is abandoned


class DataDirWarning(UserWarning):
    """A ``data_dir`` (``--data-dir``) that is not a folder: the files are looked for elsewhere."""


class ChecksumError(DataError):
    """A downloaded file whose checksum differs from the published one (it was deleted)."""


def cache_root() -> Path:
    """The user cache for cnnlab datasets: ``$XDG_CACHE_HOME/cnnlab`` or ``~/.cache/cnnlab``.

    >>> cache_root().name
    'cnnlab'
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "cnnlab"


def cache_dir(name: str) -> Path:
    """The cache folder of one dataset, ``cache_root() / name`` (not created)."""
    return cache_root() / name


def search_dirs(
    name: str, data_dir: str | os.PathLike[str] | None, system_dirs: Sequence[Path]
) -> list[Path]:
    """The folders searched for dataset ``name``, in priority order (existing or not).

    ``data_dir`` and ``$CNNLAB_DATA`` are tried both as the folder holding the files and as the
    parent of a ``<name>`` folder, so ``--data-dir ~/data`` and ``--data-dir ~/data/mnist`` both work.
    """
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        warnings.warn(
            f"--data-dir {data_dir} is not a folder: {name} is looked for in the usual places instead "
            f"(CNNLAB_DATA, {cache_dir(name)}, the system's dataset folders), and a missing file is "
            f"downloaded into {Path(data_dir).expanduser() / name}. Check the path if you meant other files.",
            DataDirWarning,
            stacklevel=2,
        )
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("CNNLAB_DATA") or None):
        if root is not None:
            base = Path(root).expanduser()
            dirs += [base, base / name]
    dirs.append(cache_dir(name))
    dirs += list(system_dirs)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_file(filename: str, dirs: Iterable[Path], *, gz: bool = True, aliases: Sequence[str] = ()) -> Path | None:
    """First ``dir/filename`` (or ``dir/<alias>``) that exists, also trying each without ``.gz`` (a
    decompressed copy); the folders are tried in order, each for every name."""
    names: list[str] = []
    for name in (filename, *aliases):
        names.append(name)
        if gz and name.endswith(".gz"):
            names.append(name[: -len(".gz")])
    for d in dirs:
        for n in names:
            path = d / n
            if path.is_file():
                return path
    return None


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file (``algorithm`` is ``"md5"`` or ``"sha256"``)."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_algorithm(checksum: str) -> str:
    """``"md5"`` for 32 hex digits, ``"sha256"`` for 64; anything else is a programming error."""
    lengths = {32: "md5", 64: "sha256"}
    if len(checksum) not in lengths:
        raise ValueError(
            f"checksum must be 32 (md5) or 64 (sha256) hex digits; received {checksum!r} "
            f"({len(checksum)} characters)."
        )
    return lengths[len(checksum)]


def _is_tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def download(url: str, dest: Path, checksum: str | None = None, *, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying an md5/sha256 ``checksum`` when given.

    Shows a rich progress bar on a terminal and two plain lines otherwise. Raises
    :class:`DataError` when the server cannot be reached, the transfer stops before its announced
    length, or the checksum does not match (the partial file is removed in every case).

    >>> download("http://127.0.0.1:9/x.gz", Path("/tmp/x.gz"))  # doctest: +SKIP
    """
    algorithm = checksum_algorithm(checksum) if checksum else "sha256"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The temporary file sits in the destination folder so the final rename is atomic.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, algorithm, quiet=quiet)
            out.flush()
            os.fsync(out.fileno())
        if checksum and digest != checksum.lower():
            raise ChecksumError(
                f"Downloaded file {dest.name} from {url} has {algorithm} {digest}, but the published "
                f"checksum is {checksum}. The download is corrupt or the mirror serves another file; "
                "it was deleted. Try again, or set CNNLAB_MIRROR to another mirror."
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; dataset files are ordinary readable files
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _stream(url: str, out: IO[bytes], algorithm: str, *, quiet: bool) -> str:
    """Copy ``url`` into the binary file ``out`` while hashing; returns the hex digest.

    Raises :class:`DataError` when the connection fails, stalls for ``TIMEOUT_S`` or closes before
    the ``Content-Length`` the server announced (urllib returns a short body without complaint).
    """
    digest = hashlib.new(algorithm)
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"Could not download {url}: {reason}.") from exc
    received = 0

    def chunks() -> Iterator[bytes]:
        nonlocal received
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
            yield chunk

    with response:
        total = int(response.headers.get("Content-Length") or 0) or None
        try:
            if quiet:
                for _ in chunks():
                    pass
            elif _is_tty():
                _stream_rich(chunks(), url, total)
            else:
                size = f" ({total / 1e6:.1f} MB)" if total else ""
                print(f"downloading {url}{size}", file=sys.stderr, flush=True)
                for _ in chunks():
                    pass
                print(f"downloaded {received} bytes from {url}", file=sys.stderr, flush=True)
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(_interrupted(url, received, total, f"{type(exc).__name__}: {exc}")) from exc
    if total is not None and received != total:
        raise DataError(_interrupted(url, received, total, "the server closed the connection"))
    return digest.hexdigest()


def _interrupted(url: str, received: int, total: int | None, reason: str) -> str:
    of = f" of {total}" if total else ""
    return (
        f"The download of {url} stopped after {received}{of} bytes ({reason}). The partial file was "
        "deleted, so nothing half-written is kept: run the command again to restart the download, or "
        "set CNNLAB_MIRROR to another mirror."
    )


def _stream_rich(chunks: Iterator[bytes], url: str, total: int | None) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(url.rsplit("/", 1)[-1], total=total)
        for chunk in chunks:
            progress.advance(task, len(chunk))


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (directory entries live in the directory's own blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def mirror_url(default: str, mirror: str | None) -> str:
    """The base URL to download from: ``mirror`` argument, then ``$CNNLAB_MIRROR``, then ``default``.

    >>> mirror_url("https://example.org/data/", "http://127.0.0.1:8000")
    'http://127.0.0.1:8000/'
    """
    base = mirror or os.environ.get("CNNLAB_MIRROR") or default
    return base if base.endswith("/") else base + "/"
