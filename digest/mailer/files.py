"""A transport that writes messages to a folder instead of sending them (dry runs, ``digest preview``)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from digest.errors import DeliveryError
from digest.mailer.outcome import SendOutcome, bad_address

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]+")


class FileTransport:
    """Writes each message to a folder instead of sending it (dry runs, ``digest preview``).

    ``layout="flat"``: ``FOLDER/<UTC time>-<counter>-<recipient>.eml``.
    ``layout="maildir"``: written to ``FOLDER/tmp/`` then renamed into ``FOLDER/new/`` (readable by mail clients).
    Files are created exclusively, so two processes never overwrite each other.
    """

    def __init__(self, folder: Path | str, *, layout: Literal["flat", "maildir"] = "flat") -> None:
        self.folder = Path(folder)
        self.layout = layout
        self.paths: list[Path] = []
        self.messages_sent = 0
        self._counter = 0

    async def __aenter__(self) -> Self:
        try:
            if self.layout == "maildir":
                for sub in ("tmp", "new", "cur"):
                    (self.folder / sub).mkdir(parents=True, exist_ok=True)
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"cannot create the mail folder {self.folder}: {exc.strerror}") from None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        """Write ``message`` to a new file; the outcome is ``sent`` with the file's path as the reply."""
        bad = bad_address(sender, "sender") or bad_address(recipient, "recipient")
        if bad is not None:
            return bad
        try:
            path = self._write(recipient, message)
        except OSError as exc:
            return SendOutcome("temporary", None, f"cannot write to {self.folder}: {exc.strerror}")
        self.paths.append(path)
        self.messages_sent += 1
        return SendOutcome("sent", 250, f"written to {path}")

    def _names(self, recipient: str) -> Iterator[str]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        safe = _UNSAFE_NAME.sub("_", recipient)[:64]
        while True:
            self._counter += 1
            yield f"{stamp}-{self._counter:06d}-{os.getpid()}-{safe}.eml"

    def _write(self, recipient: str, message: bytes) -> Path:
        target_dir = self.folder / "new" if self.layout == "maildir" else self.folder
        for name in self._names(recipient):
            target = target_dir / name
            if target.exists():
                continue
            staging = self.folder / "tmp" / name if self.layout == "maildir" else target_dir / f".{name}.tmp"
            try:
                fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(message)
                # Readers (a mail client on new/, a test) never see half a message.
                os.link(staging, target)
            except FileExistsError:
                continue
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staging)
            return target
        raise AssertionError("unreachable")  # pragma: no cover
