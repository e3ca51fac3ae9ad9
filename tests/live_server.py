"""For the browser tests: the web app on a real loopback port (uvicorn in a daemon thread, since Playwright's
sync API holds an event loop on the test's own thread), a page's console problems, screenshots."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

#: Screenshots of the browser tests, one folder per area (CI keeps them).
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


class NoMail:
    """The mailer of an app whose pages send no mail: a call here is a bug in the page."""

    def __init__(self, what: str = "these pages send no mail") -> None:
        self.what = what

    async def send(self, sender: str, recipient: str, message: bytes) -> object:
        raise AssertionError(self.what)


class LiveServer:
    """A loopback port bound at once (so the app's config can name ``url`` before the app exists), then
    ``with live.serve(app):`` serves the app there until the block ends."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.sock.close()

    @contextmanager
    def serve(self, app: Any) -> Iterator[str]:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.started, "uvicorn did not start"
            yield self.url
        finally:
            server.should_exit = True
            thread.join(10)


def console_problems(page: Any, expected_status: int | None = None) -> list[str]:
    """A list that fills with the page's console errors (a CSP violation is one) and uncaught script errors
    from now on. A console error for a response of ``expected_status`` (asked for on purpose) is left out."""
    problems: list[str] = []
    expected = f"status of {expected_status}" if expected_status is not None else None

    def on_console(message: Any) -> None:
        if message.type == "error" and (expected is None or expected not in message.text):
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def screenshot(page: Any, folder: str, name: str) -> None:
    """The whole page to test-artifacts/<folder>/<name>.png."""
    (ARTIFACTS / folder).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / folder / f"{name}.png"), full_page=True)
