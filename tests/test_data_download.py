"""Downloads cut off half-way: a clear DataError, and no file left that a later run would take as complete."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import cnnlab.data.download as download_module
from _idx_files import idx_bytes
from cnnlab.data import load_dataset
from cnnlab.data.download import download
from cnnlab.errors import DataError

BODY = bytes(range(256)) * 64  # 16 KiB, more than one read


class _CutHandler(http.server.BaseHTTPRequestHandler):
    """Announces the whole body, sends half of it, then closes (``cut``) or goes silent (``stall``)."""

    mode = "cut"
    body = BODY

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2])
        self.wfile.flush()
        if self.mode == "stall":
            time.sleep(2.0)  # longer than the client's timeout in the test
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def _serve(mode: str, body: bytes = BODY) -> Iterator[str]:
    handler = type("Handler", (_CutHandler,), {"mode": mode, "body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()




def test_a_connection_closed_half_way_is_not_kept_even_without_a_checksum(isolated: Path) -> None:
    """urllib returns the short body without complaint: it was renamed to the real name as if complete."""
    dest = isolated / "dl" / "file.bin"
    for url in _serve("cut"):
        with pytest.raises(DataError, match=rf"The download of {url}file.bin stopped after 8192 of 16384 bytes "
                           r"\(the server closed the connection\)\. The partial file was deleted"):
            download(url + "file.bin", dest, quiet=True)
    assert list(dest.parent.iterdir()) == []  # neither file.bin nor a .part file


def test_a_stalled_download_is_a_data_error_not_a_raw_timeout(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that stops sending raised a bare TimeoutError from deep inside socket.py."""
    monkeypatch.setattr(download_module, "TIMEOUT_S", 0.3)
    dest = isolated / "dl" / "file.bin"
    for url in _serve("stall"):
        with pytest.raises(DataError, match=r"stopped after \d+ of 16384 bytes \(TimeoutError: timed out\)"):
            download(url + "file.bin", dest, quiet=True)
    assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("quiet", [True, False])
def test_an_mnist_download_cut_half_way_leaves_nothing_for_the_next_run(
    isolated: Path, quiet: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without checksums the half file was saved as train-images-idx3-ubyte.gz, then read as damaged."""
    body = gzip.compress(idx_bytes(np.zeros((20, 28, 28), dtype=np.uint8)), mtime=0)
    (isolated / "data").mkdir()
    for url in _serve("cut", body):
        with pytest.raises(DataError, match=r"Dataset 'mnist' is missing file train-images-idx3-ubyte\.gz and it "
                           r"could not be downloaded\. The download of .* stopped after \d+ of \d+ bytes"):
            load_dataset("mnist", "train", isolated / "data", mirror=url, checksums={}, quiet=quiet)
    assert not any(p.is_file() for p in (isolated / "data").rglob("*"))
    capsys.readouterr()
