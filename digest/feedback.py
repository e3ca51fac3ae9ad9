"""Delivery feedback (DESIGN section 12): bounces and complaints that come back after the relay took a digest.

- The envelope sender of a digest is VERP, ``bounces+<signed delivery id>@domain``
  (``digest.outgoing.envelope_sender``), so a bounce names its delivery even when the DSN itself is mangled.
- ``digest.dsn`` reads each message (flufl.bounce for DSNs, ARF reports are complaints).
- ``process_message`` / ``process_event`` apply it: a complaint unsubscribes at once (status
  ``unsubscribed``, the complaint recorded in the ``feedback`` row: a complaint is the strongest "stop");
  ``hard_threshold`` hard bounces, or a soft-bounce score of ``soft_threshold``, mark the address
  ``bounced``. Each soft bounce adds 1; the score halves for every 7 days without a bounce.
- Every message is recorded in ``feedback`` as received, also one that cannot be read (kind
  ``unreadable``, counted by ``digest bounces``), so nothing is dropped.

While VERP is in use (``[bounces] address`` set), a bounce is applied only when it carries a valid VERP
token: anyone can mail the bounce address a made-up DSN naming someone else. Such a message is recorded
and changes nobody. Complaints (ARF) are applied either way: a wrongly kept complaint costs more than a
wrongly honoured one. Nothing here reads the clock: ``now`` is passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.config import Config
from digest.dsn import KINDS, Failure, Kind, Settings, Verdict, classify, verp_delivery_id
from digest.store import feedback as repo
from digest.store.db import Connection, Engine, transaction

__all__ = ["KINDS", "Failure", "Kind", "Result", "Settings", "Verdict", "classify", "verp_delivery_id"]

log = logging.getLogger("digest.feedback")

#: A soft-bounce score halves for every this many days without a bounce.
QUIET_PERIOD = timedelta(days=7)
#: The first bytes of each message are kept in the feedback table (a DSN may carry a whole digest).
RAW_KEPT = 256 * 1024


@dataclass
class Result:
    """What processing one message did (also what ``digest bounces`` shows)."""

    feedback_id: int
    kind: Kind
    email: str | None
    actions: list[str] = field(default_factory=list)

    @property
    def action(self) -> str:
        return "; ".join(self.actions)


# -- settings ------------------------------------------------------------------------------------------


def settings_for(config: Config) -> Settings:
    """The feedback settings of ``config`` (reads the signing key)."""
    return Settings(
        secret=config.secret_key(),
        bounce_address=config.bounces.address,
        soft_threshold=config.bounces.soft_threshold,
        hard_threshold=config.bounces.hard_threshold,
    )


# -- applying feedback ---------------------------------------------------------------------------------


def decayed(score: float, last_bounce_at: datetime | None, now: datetime) -> float:
    """The soft-bounce score at ``now``: halved for each full quiet period since the last bounce."""
    if last_bounce_at is None or score <= 0:
        return max(score, 0.0)
    periods = max(0, (now - last_bounce_at) // QUIET_PERIOD)
    return score * 0.5**periods if periods < 64 else 0.0


def process_message(
    engine: Engine,
    settings: Settings,
    raw: bytes,
    *,
    source: str,
    now: datetime,
    envelope_to: Sequence[str] = (),
) -> Result:
    """Classify one received message, apply it, and record it (all in one transaction)."""
    return apply(engine, settings, classify(raw, settings, envelope_to), raw, source=source, now=now)


def process_event(
    engine: Engine, settings: Settings, event: Failure, raw: bytes, *, source: str, now: datetime
) -> Result:
    """Apply one event that already says what happened (a webhook's email, type and reason)."""
    return apply(engine, settings, Verdict(event.kind, (event,)), raw, source=source, now=now)


def apply(
    engine: Engine, settings: Settings, verdict: Verdict, raw: bytes, *, source: str, now: datetime
) -> Result:
    """Change the subscribers the verdict is about and record the message with what it did."""
    with transaction(engine) as conn:
        target_of_delivery = None
        delivery_id = verdict.delivery_id
        if delivery_id is not None:
            target_of_delivery = repo.subscriber_of_delivery(conn, delivery_id)
            if not repo.delivery_exists(conn, delivery_id):
                delivery_id = None  # pruned since: keep the row, drop the dangling reference
        actions, first = _apply_failures(conn, settings, verdict, target_of_delivery, now)
        email_, reason, subscriber_id = first
        result_id = repo.insert_feedback(
            conn,
            {
                "received_at": now,
                "source": source,
                "kind": verdict.kind,
                "email": email_,
                "subscriber_id": subscriber_id,
                "delivery_id": delivery_id,
                "reason": reason or verdict.note or None,
                "action": "; ".join(actions) or "recorded",
                "raw_size": len(raw),
                "raw": raw[:RAW_KEPT],
            },
        )
    result = Result(result_id, verdict.kind, email_, actions or ["recorded"])
    log.info(
        "feedback %d (%s, %s): %s",
        result_id,
        source,
        verdict.kind,
        result.action,
        extra={"feedback": {"id": result_id, "kind": verdict.kind, "source": source}},
    )
    return result


def _apply_failures(
    conn: Connection,
    settings: Settings,
    verdict: Verdict,
    target_of_delivery: repo.Target | None,
    now: datetime,
) -> tuple[list[str], tuple[str | None, str | None, int | None]]:
    """Apply each failure; what was done, and (address, reason, subscriber id) for the feedback row."""
    actions: list[str] = [verdict.note] if verdict.note else []
    if not verdict.trusted:
        actions.append("not applied: no valid VERP token (a bounce must name one of our deliveries)")
        first = verdict.failures[0] if verdict.failures else Failure(None, verdict.kind, "")
        return actions, (first.email, first.reason, None)
    row: tuple[str | None, str | None, int | None] = (None, None, None)
    for failure in verdict.failures:
        # VERP names the delivery, hence the person, whatever address the DSN quotes (forwarding).
        target = target_of_delivery or (
            repo.subscriber_by_email(conn, failure.email) if failure.email else None
        )
        if target is None:
            actions.append(f"{failure.email or 'unknown address'}: no such subscriber")
            row = row if row[0] else (failure.email, failure.reason, None)
            continue
        actions.append(f"{target.email}: {_apply_one(conn, settings, target, failure, now)}")
        if row[2] is None:
            row = (target.email, failure.reason, target.subscriber_id)
        if target_of_delivery is not None:
            break  # one delivery, one person
    return actions, row


def _apply_one(
    conn: Connection, settings: Settings, target: repo.Target, failure: Failure, now: datetime
) -> str:
    if failure.kind == "complaint":
        if repo.unsubscribe_for_complaint(conn, target.subscriber_id, now):
            return "unsubscribed (complaint)"
        return "complaint recorded (already unsubscribed)"
    if failure.kind not in ("hard", "soft"):
        return "recorded"
    old = repo.load_score(conn, target.subscriber_id)
    soft = decayed(old.soft_score, old.last_bounce_at, now)
    if failure.kind == "hard":
        score = repo.Score(old.hard_count + 1, soft, now)
        counted = f"hard bounce {score.hard_count}/{settings.hard_threshold}"
        over = score.hard_count >= settings.hard_threshold
    else:
        score = repo.Score(old.hard_count, soft + 1, now)
        counted = f"soft score {score.soft_score:g}/{settings.soft_threshold:g}"
        over = score.soft_score >= settings.soft_threshold
    repo.save_score(conn, target.subscriber_id, score, failure.reason)
    if over and repo.mark_bounced(conn, target.subscriber_id, now):
        return f"{counted}: marked bounced"
    if over:
        return f"{counted} (already {target.status})"
    return counted
