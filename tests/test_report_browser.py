"""The report of a real ``cnnlab train`` run: self-contained HTML, checked statically and in headless Chromium.

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``; no extra Python
package): every network request, failed load, console message and uncaught exception is recorded, the
DOM is read back and a screenshot is taken. A control page with a broken image, a request to the
network and a console error checks that the harness does see such problems.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.viz.report import SECTIONS

WIDTH, HEIGHT = 1200, 900


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cnnlab.data import load_dataset
    from cnnlab.errors import DataError

    try:
        load_dataset("fashion-mnist", "test")
    except DataError as err:
        pytest.skip(f"the report test trains on Fashion-MNIST, which is not available here: {err}")
    out = tmp_path_factory.mktemp("report-run")
    args = ["train", "--recipe", "quick", "--out", str(out), "--limit-train", "300", "--set", "limit_test=200"]
    if main([*args, "--set", "progress=none"]) != 0:
        pytest.fail("cnnlab train failed")
    return out


def _train_writes_reports() -> bool:
    import argparse

    import cnnlab.cli.cmd_train as cmd_train

    parser = argparse.ArgumentParser()
    cmd_train.add_arguments(parser)
    return "--no-report" in parser._option_string_actions


def test_train_writes_the_report(run: Path) -> None:
    if not _train_writes_reports():
        pytest.skip("cnnlab train does not write the report yet (the cmd_train.py change is pending)")
    page = (run / "report.html").read_text(encoding="utf-8")
    assert all(f'<section id="{key}">' in page for key in SECTIONS)


@pytest.fixture(scope="module")
def report(run: Path) -> Path:
    assert main(["report", str(run)]) == 0
    return run / "report.html"


# ------------------------------------------------------------------------------------------- static checks


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"https?:", page, re.IGNORECASE)  # no CDN, no links out, no network at all
    assert "<script" not in page.lower()
    sources = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    images = [s for s in sources if not s.startswith("#")]  # in-page anchors of the table of contents
    assert len(images) >= 8 and all(s.startswith("data:image/png;base64,") for s in images)
    for uri in images:  # every embedded picture decodes to a real image
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
            assert im.size[0] > 20 and im.size[1] > 20
    assert "default-src 'none'" in page  # the page itself forbids any request


def test_report_sections_and_numbers(run: Path, report: Path) -> None:
    from cnnlab.analysis import analyze
    from cnnlab.train.checkpoint import load_run

    page = report.read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'<section id="{key}">' in page, key
    assert "could not draw" not in page and "not shown" not in page
    loaded = load_run(run)
    rep = analyze(loaded.model, tuple(loaded.meta["input_size"]))
    rows = re.findall(r"<tr><td class=l>([^<]+)</td><td class=l>([^<]+)</td><td class=l>([^<]+)</td>(.*?)</tr>", page)
    table = {name: cells for name, _type, _shape, cells in rows}
    for layer in rep.layers:  # the architecture table has the analysis' params, MACs and RF per layer
        if layer.rf is None:
            continue
        cells = re.findall(r"<td>([^<]*)</td>", table[layer.name])
        assert cells[:3] == [f"{layer.params:,}", f"{layer.macs:,}", "x".join(map(str, layer.rf.size))]
    assert f"{rep.totals.params:,}" in page and "FLOPs" in page
    # the effective RF is a number beside the theoretical one
    m = re.search(r"<td>(\d+)x(\d+)</td><td>(\d+)</td><td>([\d.]+) px</td><td>(\d+)x\d+</td>", page)
    assert m is not None
    assert float(m.group(4)) > 0 and int(m.group(5)) >= 1
    assert "no leaderboard rows yet: run cnnlab bench" in page or "leaderboard rows for model" in page


def test_report_shows_leaderboard_rows(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = pytest.importorskip("cnnlab.bench", reason="cnnlab.bench is not in this checkout yet")
    db = tmp_path / "board.sqlite"
    monkeypatch.setenv("CNNLAB_LEADERBOARD", str(db))
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out), "--max-images", "32"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert "no leaderboard rows yet: run cnnlab bench" in out.read_text()
    from cnnlab.bench.fingerprint import machine_fingerprint
    from cnnlab.bench.runner import data_sha256
    from cnnlab.data import load_dataset

    meta = json.loads((run / "model.json").read_text())
    test = load_dataset("fashion-mnist", "test")  # the report shows rows of this machine on this test data only
    row = {"model": "fastnet", "dataset": "fashion-mnist", "backend": "eager", "machine": machine_fingerprint().machine,
           "accuracy": 0.8125, "latency_median_ms": 1.25, "checkpoint_sha256": meta["sha256"],
           "input_size": "1x28x28", "data_sha256": data_sha256(test.images, test.labels)}  # fmt: skip
    bench.Leaderboard(db).record(row)
    bench.Leaderboard(db).record({**row, "backend": "ort", "checkpoint_sha256": "0" * 64, "model": "other"})
    assert main(["report", str(run), "--out", str(out), "--max-images", "32"]) == 0
    section = out.read_text().split('<section id="leaderboard">')[1]
    assert "0.8125" in section and "this run" in section and "eager" in section
    assert "ort" not in section  # only rows of this model


# -------------------------------------------------------------------------------------------- the browser


def _chromium() -> str | None:
    for name in (os.environ.get("CNNLAB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


class DevTools:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (JSON messages ended by NUL, fds 3 and 4)."""

    def __init__(self, exe: str, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()

        def child_fds() -> None:  # the browser reads commands on fd 3 and writes answers on fd 4
            a, b = os.dup(cmd_r), os.dup(out_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}"]  # fmt: skip
        self.proc = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(msg)
        return parsed

    def send(self, method: str, session: str | None = None, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            return
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return

    def open(self, url: str, width: int, height: int) -> str:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session: str = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session)
        self.send("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.send("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired", session)
        time.sleep(0.3)  # let late console messages and image decoding land
        self.send("Runtime.evaluate", session, expression="1")  # flushes pending events into self.events
        return session

    def problems(self, session: str, allowed_prefixes: tuple[str, ...]) -> list[str]:
        """Failed or unexpected requests, console errors/warnings, exceptions and error log entries."""
        found = []
        for e in (e for e in self.events if e.get("sessionId") == session):
            p, method = e.get("params", {}), e.get("method")
            if method == "Network.requestWillBeSent" and not p["request"]["url"].startswith(allowed_prefixes):
                found.append(f"request to {p['request']['url']}")
            elif method == "Network.loadingFailed":
                found.append(f"failed request: {p.get('errorText')} {p.get('blockedReason') or ''}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                found.append(f"console {p['type']}: {[a.get('value') for a in p.get('args', [])]}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"uncaught: {p['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                found.append(f"log {p['entry']['level']}: {p['entry'].get('text')}")
        return found

    def evaluate(self, session: str, expression: str) -> Any:
        return self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)["result"]["value"]

    def screenshot(self, session: str) -> Image.Image:
        data = self.send("Page.captureScreenshot", session, format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._out_r)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "no Chromium found (looked for $CNNLAB_CHROMIUM, chromium, chromium-browser, google-chrome); "
            "install Debian's package with `apt-get install -y chromium` (scripts/test.sh does this)"
        )
    tools = DevTools(exe, tmp_path_factory.mktemp("chromium-profile"))
    yield tools
    tools.close()


_DOM = """JSON.stringify({
  sections: [...document.querySelectorAll('section')].map(s => s.id),
  titles: [...document.querySelectorAll('h2')].map(h => h.textContent),
  images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.src.slice(0, 22)]),
  tables: document.querySelectorAll('table').length,
  errors: document.querySelectorAll('.err').length,
  architecture: document.querySelector('#architecture th:nth-child(6)')?.textContent,
  height: document.documentElement.scrollHeight,
})"""


def test_report_in_headless_chromium(browser: DevTools, report: Path) -> None:
    session = browser.open(report.resolve().as_uri(), WIDTH, HEIGHT)
    assert browser.problems(session, ("file://", "data:")) == []
    dom = json.loads(browser.evaluate(session, _DOM))
    assert dom["sections"] == list(SECTIONS)
    assert "Grad-CAM and saliency" in dom["titles"] and "Kernels" in dom["titles"]
    assert dom["architecture"] == "RF" and dom["tables"] >= 3 and dom["errors"] == 0
    assert len(dom["images"]) >= 8
    for complete, w, h, src in dom["images"]:  # every picture decoded by the browser
        assert complete and w > 20 and h > 20 and src == "data:image/png;base64,"
    assert dom["height"] > 3 * HEIGHT  # a long page: the pictures took up room
    shot = browser.screenshot(session)
    assert shot.size == (WIDTH, HEIGHT)
    pixels = np.asarray(shot)
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank


def test_harness_sees_broken_pages(browser: DevTools, tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="missing.png"><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("boom"); notDefined();</script></body></html>'
    )
    session = browser.open(bad.as_uri(), 400, 300)
    found = " | ".join(browser.problems(session, ("file://", "data:")))
    assert "request to http://127.0.0.1:9/x.png" in found
    assert "failed request" in found and "console error: ['boom']" in found and "uncaught" in found
