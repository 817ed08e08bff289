"""A tiny Chrome DevTools Protocol driver for the browser tests (headless Chromium, no new dependency).

Launches ``chromium --headless --remote-debugging-port=0`` with a throw-away profile, attaches to its first tab
over the DevTools WebSocket (``websockets``' sync client, already in the Airflow venv) and offers what the UI
tests need: open a page, evaluate JavaScript, wait for a selector or a condition, click an element by its text
(a real mouse event, so it counts as a user gesture), type, press a key, take a screenshot, list the open tabs.

Frames: ``frame=`` names a same-origin iframe (a CSS selector in the top document); JavaScript then runs with
``doc`` bound to that frame's document and clicks land at its coordinates in the top page.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

KEYS = {"Enter": 13, "Escape": 27, "Tab": 9, "ArrowDown": 40, "ArrowUp": 38, "Backspace": 8}


class CdpError(RuntimeError):
    """A DevTools call failed, or what a test waited for did not happen in time."""


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def require_chromium() -> str:
    """The Chromium executable; skip (fail under MLOPS_REQUIRE_SERVICES=1, as in CI) when it is not installed."""
    import pytest
    from conftest import REQUIRE_SERVICES

    binary = find_chromium()
    if binary:
        return binary
    msg = "headless Chromium is not installed (Debian: apt-get install -y chromium)"
    pytest.fail(msg) if REQUIRE_SERVICES else pytest.skip(msg)


class Browser:
    """One headless Chromium and its first tab. Use as a context manager (the process and profile are removed).

    :param binary: the Chromium executable.
    :param width: viewport width in CSS pixels; ``height``: its height.
    :param timeout: default seconds for waits.
    """

    def __init__(self, binary: str, *, width: int = 1400, height: int = 1000, timeout: float = 60) -> None:
        self.binary, self.width, self.height, self.timeout = binary, width, height, timeout
        self._profile = Path(tempfile.mkdtemp(prefix="mlops-cdp-"))
        self._proc: subprocess.Popen | None = None
        self._ws: Any = None
        self._id = 0
        self.port = 0
        self.console: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        from websockets.sync.client import connect

        self._proc = subprocess.Popen(
            [self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        active = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.is_file() and active.read_text().strip()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise CdpError(f"Chromium did not open its DevTools port (exit code {self._proc.poll()})")
            time.sleep(0.2)
        self.port = int(active.read_text().split()[0])
        page = next(t for t in self.targets() if t["type"] == "page")
        self._ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._ws is not None:
                self._ws.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    # -- protocol --------------------------------------------------------------------------------------------------
    def targets(self) -> list[dict[str, Any]]:
        """The browser's targets (tabs, frames, workers), from its ``/json/list`` endpoint."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    def pages(self) -> list[str]:
        """The URLs of the open tabs."""
        return [t["url"] for t in self.targets() if t["type"] == "page"]

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        """Send one DevTools command and return its result (events received meanwhile: console messages kept)."""
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"{method}: no answer in {timeout:.0f}s")
            message = json.loads(self._ws.recv(timeout=left))
            if message.get("id") == self._id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            if message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))

    def eval(self, expression: str, *, frame: str | None = None) -> Any:
        """The value of a JavaScript expression (promises awaited); ``doc`` is the page's or ``frame``'s document."""
        doc = "document" if frame is None else f"document.querySelector({json.dumps(frame)}).contentDocument"
        wrapped = f"(async () => {{ const doc = {doc}; return ({expression}); }})()"
        result = self.call("Runtime.evaluate", {"expression": wrapped, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(f"JavaScript failed: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    # -- pages -----------------------------------------------------------------------------------------------------
    def goto(self, url: str, *, wait_selector: str | None = None, timeout: float | None = None) -> None:
        """Open ``url`` in the tab and wait for the document (and ``wait_selector``, when given)."""
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"cannot open {url}: {result['errorText']}")
        self.wait_for("doc.readyState === 'complete'", timeout=timeout, what=f"{url} to load")
        if wait_selector:
            self.wait_for_selector(wait_selector, timeout=timeout)

    def wait_for(self, condition: str, *, frame: str | None = None, timeout: float | None = None,
                 what: str | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.eval(condition, frame=frame)
                if value:
                    return value
            except CdpError as err:  # the frame or the page is not there yet
                last_error = err
            time.sleep(0.25)
        raise CdpError(f"timed out waiting for {what or condition}" + (f" (last error: {last_error})"
                                                                       if last_error else ""))

    def wait_for_selector(self, selector: str, *, frame: str | None = None, timeout: float | None = None) -> None:
        self.wait_for(f"!!doc.querySelector({json.dumps(selector)})", frame=frame, timeout=timeout,
                      what=f"an element matching {selector!r}")

    def text(self, selector: str = "body", *, frame: str | None = None) -> str:
        """The visible text of the first element matching ``selector``."""
        return self.eval(f"(doc.querySelector({json.dumps(selector)}) || {{}}).innerText || ''", frame=frame)

    # -- input -----------------------------------------------------------------------------------------------------
    def _find_js(self, text: str, selector: str, exact: bool) -> str:
        match = "t === want" if exact else "t.includes(want)"
        return (f"(() => {{ const want = {json.dumps(text)}; const els = [...doc.querySelectorAll("
                f"{json.dumps(selector)})].filter(el => {{ const t = (el.innerText || el.value || "
                f"el.getAttribute('aria-label') || '').trim(); const r = el.getBoundingClientRect(); "
                f"return {match} && r.width > 0 && r.height > 0; }}); return els.length ? els[els.length - 1] : null; "
                f"}})()")

    def click_text(self, text: str, *, selector: str = "button, a, [role=option], [role=menuitem], [role=tab], "
                   "label, li, span, div", exact: bool = True, frame: str | None = None,
                   timeout: float | None = None) -> None:
        """Click (a real mouse press and release) the innermost visible element whose text is ``text``."""
        find = self._find_js(text, selector, exact)
        self.wait_for(f"!!{find}", frame=frame, timeout=timeout, what=f"something to click reading {text!r}")
        rect = self.eval(f"(() => {{ const el = {find}; el.scrollIntoView({{block: 'center'}}); const r = "
                         "el.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()",
                         frame=frame)
        if frame is not None:
            offset = self.eval(f"(() => {{ const r = document.querySelector({json.dumps(frame)})"
                               ".getBoundingClientRect(); return {x: r.x, y: r.y}; })()")
            rect = {"x": rect["x"] + offset["x"], "y": rect["y"] + offset["y"]}
        self.click_at(rect["x"], rect["y"])

    def click_at(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                   "buttons": 0 if kind == "mouseMoved" else 1, "clickCount": 1})

    def focus(self, selector: str, *, frame: str | None = None) -> None:
        self.wait_for_selector(selector, frame=frame)
        self.eval(f"doc.querySelector({json.dumps(selector)}).focus()", frame=frame)

    def type(self, text: str) -> None:
        """Type ``text`` into the focused element (as an input method would: one insert, input events fire)."""
        self.call("Input.insertText", {"text": text})

    def press(self, key: str) -> None:
        """Press and release a named key (``Enter``, ``Escape``, ``Tab``, ``ArrowDown``, ...)."""
        code = KEYS[key]
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                 "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code})

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A PNG of the viewport (or the whole page) at ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.eval("({w: doc.documentElement.scrollWidth, h: doc.documentElement.scrollHeight})")
            params.update({"captureBeyondViewport": True,
                           "clip": {"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1}})
        data = self.call("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
