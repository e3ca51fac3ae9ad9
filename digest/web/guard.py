"""Request bodies, bounded: at most MAX_BODY bytes, no file parts, refused before the app reads anything.

Every form here is a few fields of text; nothing needs more than a few kilobytes. A body is refused with 413
when its Content-Length says it is too big (nothing is read), or when a chunked body grows past the limit
while it streams in (what was read is dropped). A multipart body with a file part is refused with 400 before
Starlette's form parser could spool it to a temporary file. What is left is handed to the app from memory.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024

#: status, heading, text -> the error page (the site's message page).
ErrorPage = Callable[[int, str, str], Response]


class _TooLarge(Exception):
    pass


class BodyGuard:
    """ASGI middleware: bodies over ``max_bytes`` get 413, multipart file parts 400, unread by the app."""

    def __init__(self, app: ASGIApp, error_page: ErrorPage, max_bytes: int = MAX_BODY) -> None:
        self.app = app
        self.error_page = error_page
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(413, scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except _TooLarge:
            await self._refuse(413, scope, receive, send)
            return
        if body is None:  # the client went away
            return
        replay = _Replay(body, receive)
        if headers.get("content-type", "").lower().startswith("multipart/") and await _has_file(scope, body):
            await self._refuse(400, scope, receive, send)
            return
        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, status: int, scope: Scope, receive: Receive, send: Send) -> None:
        if status == 413:
            response = self.error_page(
                413, "Too much to send", f"This site accepts forms of at most {self.max_bytes // 1024} KB."
            )
        else:
            response = self.error_page(400, "Files are not accepted", "Send the form without attachments.")
        response.headers["connection"] = "close"  # the rest of the body is never read
        await response(scope, receive, send)


class _Replay:
    """The body read by the guard, then the client's own messages (a disconnect, for streaming answers)."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()


async def _has_file(scope: Scope, body: bytes) -> bool:
    """True when the multipart ``body`` has a file part (Starlette's parser refuses it at its headers)."""
    request = Request(scope, _Replay(body, _never))
    try:
        async with request.form(max_files=0):
            return False
    except (MultiPartException, HTTPException) as exc:  # Starlette wraps it in a 400 inside an app
        return "files" in str(getattr(exc, "detail", exc))


async def _never() -> Message:
    return {"type": "http.disconnect"}
