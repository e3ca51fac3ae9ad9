"""Reading the messages that come back to the bounce address (pure: no I/O, no clock).

``classify`` turns one message into a Verdict: flufl.bounce (Mailman's detectors: RFC 3464 DSNs, Exim,
Exchange, qmail, ...) finds the failed recipients and whether they failed for good; an ARF report (RFC 5965,
``multipart/report; report-type=feedback-report``) is a complaint; the VERP token in the addresses names the
delivery. What it means for subscribers is ``digest.feedback``'s business.

Hard or soft: a permanent failure is hard, except "mailbox full" (x.2.2) and a failure with a 4.x.x status
(a message that expired in a queue), which are soft. A message to a VERP address that no detector
understands is counted as soft: VERP says which delivery it is about, but not how bad it is.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from typing import Literal

from flufl.bounce import all_failures

from digest.errors import TokenError
from digest.tokens import read_bounce_token

log = logging.getLogger("digest.feedback")

Kind = Literal["hard", "soft", "complaint", "ignored", "unreadable"]
KINDS: tuple[str, ...] = ("hard", "soft", "complaint", "ignored", "unreadable")
_CODE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b[45]\d\d[ -]")


@dataclass(frozen=True)
class Settings:
    """What feedback processing needs from the config and the signing key (``feedback.settings_for``)."""

    secret: str
    bounce_address: str | None
    soft_threshold: float = 5
    hard_threshold: int = 1


@dataclass(frozen=True)
class Failure:
    """One address a message reports on."""

    email: str | None
    kind: Kind
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What one received message says: its kind, the delivery VERP names, and each address it is about."""

    kind: Kind
    failures: tuple[Failure, ...] = ()
    delivery_id: int | None = None
    note: str = ""
    #: False for a bounce without a valid VERP token while VERP is in use: anyone can mail the bounce
    #: address a made-up DSN naming someone else, so it is recorded but changes nobody.
    trusted: bool = True


def verp_delivery_id(settings: Settings, address: str) -> int | None:
    """The delivery id in a VERP address of ours, or None (another address, or a forged token)."""
    if not settings.bounce_address:
        return None
    base_local, _, base_domain = settings.bounce_address.rpartition("@")
    local, _, domain = parseaddr(address)[1].rpartition("@")
    prefix = base_local.lower() + "+"
    if domain.lower() != base_domain.lower() or not local.lower().startswith(prefix):
        return None
    try:
        return read_bounce_token(settings.secret, local[len(prefix) :])
    except TokenError:
        return None


def classify(raw: bytes, settings: Settings, envelope_to: Sequence[str] = ()) -> Verdict:
    """Read one received message. Never raises: what cannot be read is ``unreadable``."""
    try:
        msg = email.message_from_bytes(raw)
    except Exception as exc:  # the stdlib parser is lenient; this is a last guard, never a lost message
        return Verdict("unreadable", note=f"cannot parse: {type(exc).__name__}")
    if not msg.keys():
        return Verdict("unreadable", note="no mail headers")
    try:
        return _classify(msg, settings, envelope_to)
    except Exception as exc:  # a detector choking on a strange message must not lose it
        log.exception("could not classify a feedback message")
        return Verdict("unreadable", note=f"classification failed: {type(exc).__name__}: {exc}")


def _classify(msg: email.message.Message, settings: Settings, envelope_to: Sequence[str]) -> Verdict:
    delivery_id = _find_verp(msg, settings, envelope_to)
    report = _feedback_report(msg)
    if report is not None:
        feedback_type = _one_line(report.get("Feedback-Type", "abuse")).lower()
        if feedback_type == "not-spam":
            return Verdict("ignored", delivery_id=delivery_id, note="ARF not-spam report")
        rcpt = parseaddr(_one_line(report.get("Original-Rcpt-To", "")))[1] or _original_to(msg)
        reason = f"complaint (ARF {feedback_type}"
        agent = _one_line(report.get("User-Agent", ""))
        reason += f", {agent})" if agent else ")"
        return Verdict("complaint", (Failure(rcpt or None, "complaint", reason),), delivery_id)
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # some of Mailman's heuristic detectors choke on odd messages (no From: ...)
        log.warning("a bounce detector failed on a feedback message", exc_info=True)
        temporary = permanent = frozenset()
    details = _dsn_details(msg)
    failures: list[Failure] = []
    for addr_bytes in sorted(permanent | temporary):
        addr = addr_bytes.decode("utf-8", "replace").strip().strip("<>").lower()
        status, reason = details.get(addr, ("", ""))
        reason = reason or _text_reason(msg)
        soft = addr_bytes not in permanent or status.startswith("4.") or status.endswith(".2.2")
        failures.append(Failure(addr, "soft" if soft else "hard", reason))
    if failures:
        kind: Kind = "hard" if any(f.kind == "hard" for f in failures) else "soft"
        trusted = delivery_id is not None or not settings.bounce_address
        return Verdict(kind, tuple(failures), delivery_id, trusted=trusted)
    if _is_auto_reply(msg):
        return Verdict("ignored", delivery_id=delivery_id, note="an automatic reply, not a bounce")
    if delivery_id is not None:
        reason = "bounce not understood, counted as soft: " + (_text_reason(msg) or "no reason given")
        return Verdict("soft", (Failure(None, "soft", reason),), delivery_id)
    return Verdict("unreadable", note="no bounce, complaint or VERP address recognised")


def _find_verp(msg: email.message.Message, settings: Settings, envelope_to: Sequence[str]) -> int | None:
    candidates = list(envelope_to)
    for header in ("Delivered-To", "X-Original-To", "Envelope-To", "To"):
        candidates += [a for _, a in getaddresses([str(v) for v in msg.get_all(header, [])])]
    for part in msg.walk():  # the report's Original-Mail-From, the returned message's Return-Path
        inner = _inner_headers(part)
        if inner is not None:
            for header in ("Original-Mail-From", "Return-Path"):
                value = inner.get(header)
                if value:
                    candidates.append(str(value))
    for candidate in candidates:
        found = verp_delivery_id(settings, candidate)
        if found is not None:
            return found
    return None


def _inner_headers(part: email.message.Message) -> email.message.Message | None:
    """The headers inside a message/* or text/rfc822-headers part."""
    ctype = part.get_content_type()
    if ctype in ("message/rfc822", "message/feedback-report", "message/global"):
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
            return payload[0]
        if isinstance(payload, str):
            return email.parser.HeaderParser().parsestr(payload)
    if ctype == "text/rfc822-headers":
        text = part.get_payload(decode=True)
        if isinstance(text, bytes):
            return email.parser.BytesHeaderParser().parsebytes(text)
    return None


def _feedback_report(msg: email.message.Message) -> email.message.Message | None:
    """The message/feedback-report part of an ARF report (RFC 5965), or None."""
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "feedback-report":
        return None
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            return _inner_headers(part) or email.message.Message()
    return email.message.Message()


def _original_to(msg: email.message.Message) -> str:
    for part in msg.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = _inner_headers(part)
            if inner is not None and inner.get("To"):
                return parseaddr(_one_line(str(inner["To"])))[1]
    return ""


def _dsn_details(msg: email.message.Message) -> dict[str, tuple[str, str]]:
    """Final-Recipient -> (Status, a readable reason) from the RFC 3464 per-recipient fields."""
    found: dict[str, tuple[str, str]] = {}
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:] if len(blocks) > 1 else blocks:  # the first block is per-message
            if not isinstance(block, email.message.Message):
                continue
            rcpt = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            addr = rcpt.partition(";")[2].strip().strip("<>").lower() if ";" in rcpt else rcpt.strip()
            status = _one_line(str(block.get("Status", "")))
            diagnostic = _one_line(str(block.get("Diagnostic-Code", "")))
            if ";" in diagnostic:
                diagnostic = diagnostic.partition(";")[2].strip()
            action = _one_line(str(block.get("Action", "")))
            reason = diagnostic or " ".join(x for x in (action, status) if x)
            if status and status not in reason:
                reason = f"{status} {reason}"
            if addr:
                found[addr] = (status, reason[:500])
    return found


def _text_reason(msg: email.message.Message) -> str:
    """A readable reason from a bounce that is not an RFC 3464 DSN: the first SMTP reply in its text."""
    for part in msg.walk():
        if part.get_content_type() != "text/plain":
            continue
        body = part.get_payload(decode=True)
        if not isinstance(body, bytes):
            continue
        for line in body.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if _SMTP_REPLY.match(line) or _CODE.search(line):
                return line[:500]
        break  # only the human-readable first part
    return _one_line(str(msg.get("Subject", "")))[:200]


def _is_auto_reply(msg: email.message.Message) -> bool:
    """A vacation reply or similar (MTAs mark their DSNs auto-replied too: those are not ignored here)."""
    sender = parseaddr(str(msg.get("From", "")))[1].lower()
    if msg.get_content_type() == "multipart/report" or sender.startswith(("mailer-daemon@", "postmaster@")):
        return False
    auto = str(msg.get("Auto-Submitted", "no")).lower()
    return auto.startswith("auto-replied") or bool(msg.get("X-Autoreply")) or bool(msg.get("X-Autorespond"))


def _one_line(value: str) -> str:
    return " ".join(str(value).split())
