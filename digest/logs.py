"""Logging setup: readable lines on a terminal, one JSON object per line otherwise (for log collectors)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `extra={...}` fields are kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def setup_logging(*, verbose: bool = False, json_lines: bool | None = None) -> None:
    """Configure the `digest` logger once (stderr)."""
    logger = logging.getLogger("digest")
    if getattr(logger, "_digest_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    as_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    logger._digest_configured = True  # type: ignore[attr-defined]
