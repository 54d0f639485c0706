"""A minimal Chrome DevTools Protocol client for the browser tests: start headless Chromium, open a page, read
what it requested, what it logged as an error, evaluate JavaScript in it, and take a screenshot.

Only `websockets` (its synchronous client) and the standard library: no browser is downloaded, the system's
Chromium (Debian's `chromium`, `make test` installs it where it can) is driven directly.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser to drive: $WORKBENCH_CHROMIUM, else the first of the usual names on PATH."""
    named = os.environ.get("WORKBENCH_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next(filter(None, map(shutil.which, CANDIDATES)), None)


class Browser:
    """Headless Chromium with its DevTools endpoint; pages are attached targets (flattened sessions)."""

    def __init__(self, executable: str, profile: Path, timeout_s: float = 60.0) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a reused profile's file names a port that is gone
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.socket = None
        deadline = time.monotonic() + timeout_s
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{executable} did not open its DevTools port (exit {self.process.poll()})")
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        try:
            self.socket = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout_s)
        except (OSError, TimeoutError):
            self.close()
            raise
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, timeout_s: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        number = next(self.ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout_s
        while True:
            reply = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The next event `method` of the session (one that came already counts)."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and event.get("sessionId") == session:
                    self.events.remove(event)
                    return event
            seen = len(self.events)
            reply = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if "method" in reply:
                self.events.append(reply)

    def page(self) -> Page:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session)
        return Page(self, session)

    def close(self) -> None:
        """Stop the browser and every process it started (its own session: the wrapper script, the zygotes, the
        renderers, the crash handler)."""
        if self.socket is not None:
            self.socket.close()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)


class Page:
    """One tab: open a URL, then read its requests and errors, evaluate JavaScript, take screenshots."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session
        self.url = "about:blank"

    def _mine(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.browser.events
                if e.get("sessionId") == self.session and e["method"] == method]

    def open(self, url: str) -> Page:
        """Navigate and wait for the load event; what the previous page did is forgotten."""
        self.browser.events = [e for e in self.browser.events if e.get("sessionId") != self.session]
        self.browser.call("Page.navigate", self.session, url=url)
        self.browser.wait_for("Page.loadEventFired", self.session)
        self.evaluate("1")  # a round trip: events of the load (console, errors) are in by now
        self.url = url
        return self

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True,
                                   awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    @property
    def requests(self) -> list[str]:
        """Every URL the page asked for (the page itself, images, scripts, styles...)."""
        return [p["request"]["url"] for p in self._mine("Network.requestWillBeSent")]

    @property
    def leaving(self) -> list[str]:
        """Requests that would leave the file system (anything but file: and data: URLs)."""
        return [url for url in self.requests if not url.startswith(("file://", "data:"))]

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and the browser's own error entries (a blocked load, ...)."""
        console = [" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                   for p in self._mine("Runtime.consoleAPICalled") if p.get("type") in ("error", "assert")]
        thrown = [p["exceptionDetails"].get("text", "exception") for p in self._mine("Runtime.exceptionThrown")]
        logged = [f"{p['entry'].get('source')}: {p['entry'].get('text')}" for p in self._mine("Log.entryAdded")
                  if p["entry"].get("level") == "error"]
        return console + thrown + logged

    def screenshot(self, path: Path) -> Path:
        data = self.browser.call("Page.captureScreenshot", self.session, format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path
