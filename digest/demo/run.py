"""`digest demo`: the whole pipeline offline, with real parts.

A bundled real Hugging Face snapshot is served by a loopback HTTP server and fetched through the production
httpx code; papers go into a throwaway SQLite database; three subscribers get their digests through the
production SMTP pool into an embedded SMTP server; every received mail is written to the output folder.
"""

from __future__ import annotations

import asyncio
import email
import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import date
from email.message import Message
from pathlib import Path
from typing import Any

from digest.config_load import parse_config
from digest.demo.bounce import BounceDemo, bounce_back
from digest.demo.smtp_sink import ReceivedMessage, SmtpSink
from digest.demo.snapshot_server import SnapshotServer
from digest.errors import DigestError
from digest.mailer import SmtpPool, SmtpSettings
from digest.models import RunReport, SubscriberStatus
from digest.pipeline import RunOptions, open_store, run_digest
from digest.store.papers import delivered_counts
from digest.store.subscribers import add_subscriber

DEMO_DATA = Path(__file__).parents[1] / "demo_data"
DEMO_DATE = date(2026, 8, 21)
DEMO_SUBSCRIBERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ada@example.org", "Ada", ("agent*", '"coding agents"')),
    ("grace@example.org", "Grace", ('video diffusion OR "world model"', "org:Google OR org:DeepMind")),
    ("alan@example.org", "Alan", ("benchmark* upvotes:>=10", "speech OR audio")),
)


@dataclass(frozen=True)
class DemoRow:
    email: str
    rules: tuple[str, ...]
    papers: int
    size: int
    path: Path | None


@dataclass
class DemoResult:
    run_date: date
    papers_fetched: int
    report: RunReport
    rows: list[DemoRow] = field(default_factory=list)
    bounce: BounceDemo | None = None


def run_demo(out_dir: Path, *, console: Any = None) -> DemoResult:
    """Run the demo end to end and write each received mail to ``out_dir`` (.eml and .html)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="paper-digest-demo-") as tmp,
        SnapshotServer(DEMO_DATA) as hf,
        SmtpSink() as sink,
    ):
        work = Path(tmp)
        (work / "secret_key").write_text(secrets.token_urlsafe(48), encoding="utf-8")
        config = parse_config(
            {
                "source": {"base_url": hf.base_url, "lookback_days": 3},
                "database": {"url": "sqlite:///digest.db"},
                "smtp": {
                    "host": sink.host,
                    "port": sink.port,
                    "security": "none",
                    "pool_size": 2,
                    "from": "Paper Digest <digest@demo.example.org>",
                },
                "web": {"base_url": "http://127.0.0.1:8000"},
                "security": {"secret_key_env": "DIGEST_DEMO_UNSET_SECRET", "secret_key_file": "secret_key"},
                "digest": {"list_id": "demo.paper-digest.example.org", "admin_email": None},
                # VERP envelope senders: the demo's bounce names its delivery.
                "bounces": {"address": "bounces@demo.example.org"},
            },
            work / "config.toml",
        )
        engine = open_store(config)
        for addr, name, rules in DEMO_SUBSCRIBERS:
            add_subscriber(engine, addr, rules, now=_now(), name=name, status=SubscriberStatus.ACTIVE)
        report = asyncio.run(_run(config, engine))
        counts = delivered_counts(engine)
        if report.status != "done":
            raise DigestError(f"the demo run did not finish: {report.error or report.status}")
        received = list(sink.messages)
        bounce = asyncio.run(_bounce_last(config, engine, received))
        engine.dispose()
    result = DemoResult(DEMO_DATE, report.papers_fetched, report, bounce=bounce)
    by_recipient: dict[str, bytes] = {}
    for m in received:
        for rcpt in m.recipients:
            by_recipient[rcpt] = m.data
    for addr, _name, rules in DEMO_SUBSCRIBERS:
        data = by_recipient.get(addr)
        if data is None:
            result.rows.append(DemoRow(addr, rules, 0, 0, None))
            continue
        stem = addr.split("@")[0]
        eml = out_dir / f"{stem}.eml"
        eml.write_bytes(data)
        msg = email.message_from_bytes(data)
        html = _part(msg, "text/html")
        if html is not None:
            (out_dir / f"{stem}.html").write_text(html, encoding="utf-8")
        result.rows.append(DemoRow(addr, rules, counts.get(addr, 0), len(data), eml))
    return result


async def _bounce_last(config: Any, engine: Any, received: list[ReceivedMessage]) -> BounceDemo:
    """The last demo subscriber's digest comes back later as a DSN: "user unknown"."""
    bounced = next(m for m in received if DEMO_SUBSCRIBERS[-1][0] in m.recipients)
    return await bounce_back(config, engine, bounced.sender, bounced.recipients[0], bounced.data, _now())


async def _run(config: Any, engine: Any) -> RunReport:
    async with SmtpPool(SmtpSettings.from_config(config)) as pool:
        return await run_digest(config, engine, DEMO_DATE, pool, options=RunOptions(retry_base_s=0.1))


def _part(msg: Message, content_type: str) -> str | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return None


def _now() -> Any:
    from digest.clock import utc_now

    return utc_now()
