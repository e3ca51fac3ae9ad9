"""A small real HTTP server on loopback that plays the Hugging Face Daily Papers site from captured files.

Files in the folder are named like the captures: ``api_daily_papers_date-YYYY-MM-DD.json`` (an API body)
and ``listing_papers_YYYY-MM-DD.html`` (a listing page). It serves

- ``GET /api/daily_papers?date=D&limit=L&p=N``: page N of that day's array (``[]`` for an unknown day; a
  day with only a listing page answers the items embedded in that page);
- ``GET /papers/date/D`` (and ``/papers?date=D``): the stored listing page, 404 when there is none.

``digest demo`` uses it to run offline; tests use its hooks to make the site misbehave::

    with SnapshotServer(folder) as srv:
        srv.fail("/api/daily_papers", [429, 503])   # the next two API requests fail, then it recovers
        srv.fail("/api/daily_papers", [Fault(status=200, body=b'{"error": "x"}')])
        srv.add_day(date(2025, 1, 2), items)         # an in-memory day (e.g. 130 synthetic papers)
        ... srv.base_url ... srv.requests
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from digest.errors import SourceError
from digest.sources.hf_html import parse_listing

API_PATH = "/api/daily_papers"
_API_FILE = re.compile(r"^api_daily_papers_date-(\d{4}-\d{2}-\d{2})\.json$")
_HTML_FILE = re.compile(r"^listing_papers_(\d{4}-\d{2}-\d{2})\.html$")
_HTML_PATH = re.compile(r"^/papers/date/(\d{4}-\d{2}-\d{2})/?$")
DEFAULT_LIMIT = 50  # what the real API answers without `limit`
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected misbehaviour for one request.

    ``status`` with ``body``/``headers`` replaces the answer (``body=None`` keeps the normal body for a 200,
    else sends a short error text); ``delay`` stalls before answering (to trip client timeouts);
    ``drop`` closes the connection without any answer.
    """

    status: int = 200
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    drop: bool = False


@dataclass(frozen=True, slots=True)
class Request:
    """One request the server saw, with the status it answered (0 when dropped)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int


def _as_fault(spec: Fault | int) -> Fault:
    return spec if isinstance(spec, Fault) else Fault(status=spec)


class SnapshotServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0 by default) in a daemon thread; use as a context manager."""

    def __init__(self, folder: Path | str | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_days: dict[date, list[Any]] = {}
        self.html_days: dict[date, bytes] = {}
        self.requests: list[Request] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        if folder is not None:
            self.load_folder(Path(folder))
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- content -----------------------------------------------------------------------------------------

    def load_folder(self, folder: Path) -> None:
        """Read every capture in ``folder`` (API bodies must be JSON arrays or objects; kept as parsed)."""
        for file in sorted(folder.iterdir()):
            if m := _API_FILE.match(file.name):
                self.api_days[date.fromisoformat(m.group(1))] = json.loads(file.read_text(encoding="utf-8"))
            elif m := _HTML_FILE.match(file.name):
                self.html_days[date.fromisoformat(m.group(1))] = file.read_bytes()

    def add_day(self, day: date, items: Sequence[Any]) -> None:
        """Serve ``items`` as the API answer for ``day``."""
        with self._lock:
            self.api_days[day] = list(items)

    def add_html(self, day: date, html: str | bytes) -> None:
        """Serve ``html`` as the listing page for ``day``."""
        with self._lock:
            self.html_days[day] = html.encode("utf-8") if isinstance(html, str) else html

    def fail(self, path: str, faults: Iterable[Fault | int]) -> None:
        """Queue faults for the next requests to ``path`` (no query string); afterwards it answers normally."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend(_as_fault(f) for f in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, path: str) -> list[Request]:
        """The logged requests whose path is ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SnapshotServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes handlers stalled by a `delay` fault
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SnapshotServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- request handling (called from handler threads) --------------------------------------------------

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, bytes, str]:
        if path == API_PATH:
            return self._api(query)
        html_day = query.get("date") if path in ("/papers", "/papers/") else None
        if m := _HTML_PATH.match(path):
            html_day = m.group(1)
        if html_day is not None:
            try:
                page = self.html_days.get(date.fromisoformat(html_day))
            except ValueError:
                page = None
            if page is None:
                return 404, b"<!doctype html><title>404</title><p>Not found</p>", "text/html; charset=utf-8"
            return 200, page, "text/html; charset=utf-8"
        return 404, b"not found", "text/plain; charset=utf-8"

    def _api(self, query: dict[str, str]) -> tuple[int, bytes, str]:
        json_type = "application/json; charset=utf-8"
        try:
            limit = min(MAX_LIMIT, max(1, int(query.get("limit", DEFAULT_LIMIT))))
            page = max(0, int(query.get("p", 0)))
            day = date.fromisoformat(query["date"]) if "date" in query else max(self.api_days, default=None)
        except ValueError as exc:
            return 400, json.dumps({"error": str(exc)}).encode(), json_type
        data = self._api_items(day) if day is not None else []
        if isinstance(data, list):
            data = data[page * limit : (page + 1) * limit]
        return 200, json.dumps(data, ensure_ascii=False).encode("utf-8"), json_type

    def _api_items(self, day: date) -> Any:
        if day in self.api_days:
            return self.api_days[day]
        page = self.html_days.get(day)
        if page is None:
            return []
        # Only a listing page was captured for this day: the real site would list the same papers.
        try:
            return parse_listing(page.decode("utf-8", "replace"), url="<snapshot>").items
        except SourceError:
            return []


def _make_handler(server: SnapshotServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "SnapshotServer/1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            fault = server._next_fault(parts.path)
            if fault is not None and fault.delay > 0 and server._closing.wait(fault.delay):
                return
            if fault is not None and fault.drop:
                server._log(Request("GET", parts.path, query, headers, 0))
                self.close_connection = True
                return
            status, body, ctype = server._answer(parts.path, query)
            extra: Mapping[str, str] = {}
            if fault is not None:
                extra = fault.headers
                if fault.body is not None:
                    body = fault.body
                    ctype = fault.content_type or ctype
                elif fault.status != 200:
                    body = f"error {fault.status}".encode()
                    ctype = "text/plain; charset=utf-8"
                status = fault.status
            server._log(Request("GET", parts.path, query, headers, status))
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (e.g. its timeout fired during a `delay` fault): nothing to tell it.
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: the request log is `server.requests`.
            pass

    return Handler
