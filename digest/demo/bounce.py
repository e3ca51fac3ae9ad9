"""The demo's bounce, processed offline: one received digest comes back as the DSN a relay would write for
an unknown user (RFC 3464, addressed to the digest's VERP envelope sender) and is delivered over LMTP to
the listener `serve` runs. Demo code only; production code never imports it."""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

from digest.config import Config
from digest.feedback import settings_for
from digest.inbox import FeedbackHandler, start_lmtp
from digest.store.db import Engine
from digest.store.feedback import list_feedback


@dataclass(frozen=True)
class BounceDemo:
    """What the demo's bounce did, for the summary."""

    recipient: str
    envelope_sender: str
    kind: str
    reason: str
    action: str


def relay_dsn(envelope_sender: str, recipient: str, original: bytes, now: datetime) -> bytes:
    """The DSN a relay writes when the recipient's server answered ``550 5.1.1`` after it took the mail
    (laid out as Postfix writes one: a note, the delivery-status report, the returned headers)."""
    headers, _, _ = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    reply = f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown"
    boundary = f"demo-dsn-{int(now.timestamp())}"
    text = f"""From: Mail Delivery System <MAILER-DAEMON@relay.demo.example.org>
To: {envelope_sender}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(now)}
Message-ID: {make_msgid(domain="relay.demo.example.org")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered to one or more recipients.

<{recipient}>: host mx.demo.example.org said: {reply}

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.demo.example.org

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; {reply}

--{boundary}
Content-Type: text/rfc822-headers

"""
    tail = f"\n--{boundary}--\n"
    return (text.encode("ascii") + headers + b"\n" + tail.encode("ascii")).replace(b"\n", b"\r\n")


async def bounce_back(
    config: Config, engine: Engine, envelope_sender: str, recipient: str, original: bytes, now: datetime
) -> BounceDemo:
    """Deliver the DSN for one received digest to a real LMTP listener and report what it did."""
    handler = FeedbackHandler(engine, settings_for(config), lambda: now)
    server = await start_lmtp(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dsn = relay_dsn(envelope_sender, recipient, original, now)

    def deliver() -> None:
        client = smtplib.LMTP("127.0.0.1", port)
        try:
            client.sendmail("", [envelope_sender], dsn)
        finally:
            client.quit()

    try:
        await asyncio.to_thread(deliver)
    finally:
        server.close()
        await server.wait_closed()
    row = list_feedback(engine, limit=1)[0]
    return BounceDemo(recipient, envelope_sender, row.kind, row.reason or "", row.action)
