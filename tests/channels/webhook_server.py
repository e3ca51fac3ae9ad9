"""A webhook receiver on loopback (real sockets, a thread): records every POST and answers from a script.

``server.script(Reply(429, retry_after="3"), Reply(500), Reply(200))`` sets the next answers; once the
script is used up every POST gets 200 "ok". ``Reply(delay_s=2)`` answers late (a client timeout).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    retry_after: str | None = None
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    posts: list[Received] = field(default_factory=list)
    _script: deque[Reply] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with owner._lock:
                    reply = owner._script.popleft() if owner._script else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                with owner._lock:
                    owner.posts.append(Received(self.path, dict(self.headers), body, reply.status))
                data = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    if reply.retry_after is not None:
                        self.send_header("Retry-After", reply.retry_after)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/services/T000/B000/s3cr3t-hook-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def accepted(self) -> list[Received]:
        return [p for p in self.posts if 200 <= p.answered < 300]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
