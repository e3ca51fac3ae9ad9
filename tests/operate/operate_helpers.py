"""Helpers for the operate tests: re-dated HF days, TOML configs for subprocesses, `digest serve` processes."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from freezegun import freeze_time
from pipeline_helpers import SECRET, config_data

from digest.demo.snapshot_server import SnapshotServer

FIXTURE_DAY = date(2026, 8, 21)  # 17 papers; "agent*" matches several of them


def serve_day(hf: SnapshotServer, day: date) -> None:
    """Serve the captured 2026-08-21 papers as the papers of ``day`` (their daily date moved to it)."""
    items = copy.deepcopy(hf.api_days[FIXTURE_DAY])
    for item in items:
        stamp = item["paper"]["submittedOnDailyAt"]
        item["paper"]["submittedOnDailyAt"] = day.isoformat() + stamp[10:]
    hf.add_day(day, items)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    """A small TOML writer for config files: tables of scalars, plus [[subscribers]]."""
    lines: list[str] = []
    for section, values in data.items():
        if section == "subscribers":
            for entry in values:
                lines.append("[[subscribers]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in entry.items())
            continue
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def serve_config(
    tmp_path: Path, *, hf_url: str, smtp_port: int, db_url: str, **sections: Mapping[str, Any]
) -> Path:
    """A config.toml for `digest serve` against loopback servers; the web listens on a free port."""
    data = config_data(tmp_path, hf_url=hf_url, smtp_port=smtp_port, db_url=db_url)
    # Every minute, in UTC: the catch-up on start always finds today's run due.
    data["schedule"] = {"cron": "* * * * *", "timezone": "UTC", "catch_up": True}
    data["web"].update(host="127.0.0.1", port=0)  # the web listens on a free port
    for name, values in sections.items():
        if name == "subscribers":
            data["subscribers"] = values
        else:
            data.setdefault(name, {}).update(values)
    return write_toml(tmp_path / "config.toml", data)


def env() -> dict[str, str]:
    return {**os.environ, "DIGEST_SECRET_KEY": SECRET, "PYTHONUNBUFFERED": "1"}


@dataclass
class ServeProcess:
    """A `python -m digest --config X serve` subprocess; its stderr JSON log lines are collected."""

    proc: subprocess.Popen[str]
    log_path: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"message": line, "level": "raw"})
        return out

    def wait_for_log(self, text: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.logs():
                if text in str(rec.get("message", "")):
                    return rec
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}) before {text!r}:\n{self.dump()}")
            time.sleep(0.05)
        raise AssertionError(f"no log line {text!r} within {timeout} s:\n{self.dump()}")

    def port(self) -> int:
        return int(self.wait_for_log("serving on")["port"])

    def healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port()}/healthz", timeout=5) as resp:
            assert resp.status == 200
            return dict(json.loads(resp.read()))

    def stop(self, timeout: float = 15) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def dump(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def start_serve(config: Path, log_path: Path) -> ServeProcess:
    return ServeProcess(spawn_digest(config, log_path, "serve"), log_path)


def spawn_digest(config: Path, log_path: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``python -m digest --config CONFIG ARGS...`` in the background, its stderr (the log) to ``log_path``."""
    handle = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        cwd=cwd,
        env=env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=handle,
        text=True,
    )
    handle.close()
    return proc


def today_utc() -> date:
    from datetime import UTC, datetime

    return datetime.now(UTC).date()


def days_around(day: date) -> list[date]:
    return [day - timedelta(days=1), day, day + timedelta(days=1)]


async def start_frozen_until(at: str, build: Callable[[], Any], fired: asyncio.Event) -> None:
    """Under a clock frozen at ``at`` that ticks on, start the scheduler ``build()`` makes and wait (5 s at
    most) until a job sets ``fired``; then stop the scheduler."""
    with freeze_time(at, tick=True, real_asyncio=True):
        scheduler = build()
        scheduler.start()
        try:
            await asyncio.wait_for(fired.wait(), 5)
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)
