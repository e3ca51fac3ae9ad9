"""A local HTTP server that plays ``GET /api/papers/{id}`` from the captured HF days.

The paper API answers the ``paper`` object of a Daily Papers item (no genuine capture of that endpoint
exists; the object inside a listing is what HF serves there). Unknown ids get a 404.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class PaperServer:
    def __init__(self, days: list[Path]) -> None:
        self.papers: dict[str, Any] = {}
        for path in days:
            for item in json.loads(path.read_text(encoding="utf-8")):
                self.papers.setdefault(item["paper"]["id"], item["paper"])
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body: Any = None
                if self.path.startswith("/api/papers/"):
                    body = server.papers.get(self.path.removeprefix("/api/papers/"))
                data = json.dumps(body).encode() if body is not None else b'{"error":"Not Found"}'
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> PaperServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
