"""Headless Chromium driven over the Chrome DevTools Protocol, for tests and screenshots of reports.

A real browser, not a parser: it loads the file, runs the layout, and reports what a reviewer's
browser would see, console errors, every network request the page makes, the DOM after layout
and a screenshot. The protocol is JSON over one websocket (``websockets``' sync client), with
pages attached in flat mode (one connection, a session id per page).

Debian's ``chromium`` package provides the browser (``scripts/install-dev.sh`` installs it
where it can); ``find_chromium`` returns None where there is none.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """$EVALKIT_CHROMIUM, or the first Chromium on PATH."""
    explicit = os.environ.get("EVALKIT_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


# a DevTools protocol message (command, reply or event): JSON of whatever shape the method has
Message = dict[str, Any]


@dataclass
class PageLoad:
    """What loading one URL did."""

    url: str
    console_errors: list[str] = field(default_factory=list)  # console.error, exceptions, error log entries
    requests: list[str] = field(default_factory=list)  # every URL the page requested, its own included
    log: list[Message] = field(default_factory=list)  # every Log.entryAdded entry


class Chromium:
    """One headless browser process; ``with Chromium() as browser: browser.open(path)``."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0) -> None:
        found = executable or find_chromium()
        if found is None:
            raise FileNotFoundError("no Chromium found (apt-get install chromium, or set EVALKIT_CHROMIUM)")
        self.executable: str = found
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._events: list[Message] = []

    def __enter__(self) -> Chromium:
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="evalkit-chromium-")
        args = [self.executable, "--headless=new", "--disable-gpu", "--remote-debugging-port=0",
                f"--user-data-dir={self._profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if self._process.poll() is not None or time.monotonic() > deadline:
                stderr = self._process.stderr  # a pipe (stderr=PIPE above)
                error = stderr.read().decode(errors="replace")[-2000:] if self._process.poll() and stderr else ""
                self.__exit__(None, None, None)
                raise RuntimeError(f"chromium did not start: {error or 'timeout'}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._sockets = contextlib.ExitStack()
        self._socket = self._sockets.enter_context(connect(f"ws://127.0.0.1:{port}{path}", max_size=None,
                                                           open_timeout=self.timeout))
        return self

    def __exit__(self, *exc: object) -> None:
        sockets = getattr(self, "_sockets", None)
        if sockets is not None:
            sockets.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    # ------------------------------------------------------------ protocol

    def send(self, method: str, params: Message | None = None, session: str | None = None) -> Message:
        """One command; events that arrive meanwhile are kept for ``events``."""
        message_id = next(self._ids)
        message: Message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._socket.send(json.dumps(message))
        deadline = time.monotonic() + self.timeout
        while True:
            reply: Message = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: Message = reply.get("result", {})
                return result
            self._events.append(reply)

    def wait_for(self, method: str, session: str | None = None) -> Message:
        """The first event named ``method`` (already received or the next to come)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self._events:
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    return event
            self._events.append(json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def drain(self, seconds: float) -> None:
        """Keep receiving events for ``seconds`` (late console messages, late requests)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._events.append(json.loads(self._socket.recv(timeout=left)))
            except TimeoutError:
                return

    # ------------------------------------------------------------ pages

    def open(self, path: str | os.PathLike[str], width: int = 1280, height: int = 900) -> Page:
        """Load a file in a fresh page and wait for its load event; the page records console
        errors and requests from before the navigation starts."""
        url = Path(path).resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        self._events.clear()
        started = time.perf_counter()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session)
        load_seconds = time.perf_counter() - started
        self.drain(0.3)
        page = Page(self, session, target, PageLoad(url), load_seconds)
        page.collect(self._events)
        return page


class Page:
    def __init__(self, browser: Chromium, session: str, target: str, load: PageLoad, load_seconds: float) -> None:
        self.browser, self.session, self.target, self.load, self.load_seconds = (browser, session, target, load,
                                                                                  load_seconds)

    def collect(self, events: list[Message]) -> None:
        for event in events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                self.load.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                self.load.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                         for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                self.load.console_errors.append(details.get("exception", {}).get("description") or details.get("text"))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                self.load.log.append(entry)
                if entry.get("level") == "error":
                    self.load.console_errors.append(f"{entry.get('source')}: {entry.get('text')}")

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value (JSON-serialisable), evaluated in the page."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                   session=self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: str | os.PathLike[str], height: int | None = None) -> Path:
        """A PNG of the page at its width: the whole page, or its top ``height`` pixels."""
        full = self.evaluate("document.documentElement.scrollHeight")
        width = self.evaluate("document.documentElement.clientWidth")
        clip = {"x": 0, "y": 0, "width": width, "height": min(full, height or full), "scale": 1}
        data = self.browser.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                            "captureBeyondViewport": True}, session=self.session)
        path = Path(path)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
