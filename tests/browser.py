"""A real headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
NUL-separated JSON on file descriptors 3 and 4), so tests can run the page's scripts, read back
what the page holds, and take screenshots, without any extra package or browser download."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")
DESKTOP = (1280, 900)
PHONE = (390, 844)


def chromium_command(profile: Path) -> list[str]:
    """Headless Chromium with its own profile, talking to nothing but the page it is given."""
    return [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


class PageError(AssertionError):
    pass


class Browser:
    """One headless Chromium with one tab."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM, "needs Debian's chromium"
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        self.log_path = profile.with_suffix(".log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "bash",
                    "-c",
                    f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}',
                    *chromium_command(profile),
                    "--hide-scrollbars",
                    "--remote-debugging-pipe",
                    "about:blank",
                ],
                pass_fds=(to_browser_r, from_browser_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._messages: queue.Queue[dict] = queue.Queue()
        self._next_id = 0
        self.console: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Runtime.enable", session=self.session)

    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise PageError(f"no answer to {method} within {timeout}s") from None
            if reply.get("method") == "Runtime.consoleAPICalled":
                self.console.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in reply["params"]["args"])
                )
            elif reply.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(reply["params"]["exceptionDetails"])[:500])
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise PageError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited), as JSON."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise PageError(f"{expression!r} threw {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, size: tuple[int, int] = DESKTOP, ready: str = "document.body?.dataset.ready") -> Any:
        """Load `url` at `size` and wait until `ready` is truthy; returns its value."""
        width, height = size
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
            session=self.session,
        )
        # Through a blank page, so a URL that differs only in its #fragment still loads afresh.
        self.send("Page.navigate", {"url": "about:blank"}, session=self.session)
        self.send("Page.navigate", {"url": url}, session=self.session)
        return self.wait(ready, timeout=60, what=f"{url} to become ready")

    def wait(self, expression: str, timeout: float = 30, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy (a page still loading counts as not
        yet); returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(PageError):
                last = self.evaluate(expression)
                if last:
                    return last
            time.sleep(0.1)
        raise PageError(f"timed out waiting for {what or expression}; last {last!r}; console: {self.console[-10:]}")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page at the current width."""
        width = self.evaluate("window.innerWidth")
        height = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
            session=self.session,
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        with contextlib.suppress(PageError, OSError):
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
