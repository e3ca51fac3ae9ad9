"""The web app on a real loopback port for the browser tests: uvicorn in a daemon thread, since Playwright's
sync API holds an event loop on the test's own thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import uvicorn


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
