"""A planned digest -> a finished message: render (subject, text, HTML, the ids shown), MIME, DKIM.

Compose matches nothing: the plan (``digest.planning``) brings each paper with why it matched.
"""

from __future__ import annotations

from binascii import a2b_base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from digest import likes
from digest.config import Config
from digest.message import DkimSigner, Envelope, assemble_message, make_message_id
from digest.models import MatchedPaper, Subscriber
from digest.notices import digest_url, manage_url, unsubscribe_url
from digest.outgoing import dkim_signer, envelope_domain
from digest.render import DigestContext, render_wire
from digest.stencil import WireDigest


@dataclass
class DigestMail:
    """A rendered, ready-to-send digest."""

    subscriber: Subscriber
    message: bytes
    message_id: str
    shown: list[str]  # the ids of the papers the mail shows: recorded as delivered when it is sent
    parts: WireDigest

    @property
    def subject(self) -> str:
        return self.parts.subject

    @property
    def html(self) -> str:
        """The HTML part as text (``digest preview`` writes it; sending uses the bytes)."""
        return _text_of(self.parts.html64)

    @property
    def text(self) -> str:
        return _text_of(self.parts.text64)


def _text_of(encoded: bytes) -> str:
    return a2b_base64(encoded).decode("utf-8").replace("\r\n", "\n")


@dataclass
class Composer:
    """Turns (subscriber, matches) into MIME bytes. Built once per run: the DKIM key is read once."""

    config: Config
    secret: str
    dkim: DkimSigner | None = None
    domain: str = "localhost"

    @classmethod
    def for_config(cls, config: Config) -> Composer:
        """The composer of this config (its secret, its DKIM key, its sender's domain)."""
        return cls(config, config.secret_key(), dkim_signer(config), envelope_domain(config))

    def compose(
        self, sub: Subscriber, matches: Sequence[MatchedPaper], run_date: date, now: datetime
    ) -> DigestMail | None:
        """The subscriber's digest of ``matches``; None when there are none and ``skip_empty`` is set.

        (With ``skip_empty = false``, a planned empty digest still goes out.)
        """
        if not matches and self.config.schedule.skip_empty:
            return None
        digest = self.config.digest
        unsub = unsubscribe_url(self.config, self.secret, sub)
        parts = render_wire(
            DigestContext(
                recipient=sub.email,
                name=sub.name,
                run_date=run_date,
                papers=matches,
                rules=sub.rules,
                max_papers=digest.max_papers,
                manage_url=manage_url(self.config, self.secret, sub),
                unsubscribe_url=unsub,
                postal_address=digest.postal_address,
                title=digest.title,
                base_url=self.config.source.base_url,
                view_url=digest_url(self.config, self.secret, sub, run_date),
                more_like_url=likes.more_like_url(self.config, self.secret, sub),
            )
        )
        message_id = make_message_id(self.domain)
        message = assemble_message(
            parts,
            Envelope(
                sender=self.config.smtp.from_,
                recipient=sub.email,
                list_id=digest.list_id,
                unsubscribe_url=unsub,
                unsubscribe_mailto=digest.unsubscribe_mailto,
                message_id=message_id,
                date=now,
            ),
            dkim=self.dkim,
        )
        return DigestMail(sub, message, message_id, list(parts.shown), parts)
