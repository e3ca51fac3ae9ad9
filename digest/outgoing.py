"""The ONE send path of the service's own mails: confirmation, welcome, reminder and admin alert.

Whoever sends one (``digest subscribe``, the web form, a failed run), it gets the same headers (List-Id,
List-Unsubscribe with the optional mailto, Auto-Submitted), the same DKIM signature as a digest, the same
envelope sender, and the same failure handling: nothing raises, every failure is logged once here and comes
back as a ``SendOutcome`` (a ``DeliveryError`` before DATA becomes a ``temporary`` outcome: not sent).
``digest.notices`` renders the mails (pure); this module sends them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr
from functools import lru_cache

from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import DeliveryError, DigestError
from digest.mailer import SendOutcome, Transport
from digest.message import DkimSigner, Envelope, build_message, make_message_id
from digest.models import RenderedEmail
from digest.notices import render_admin_alert
from digest.store import alerts
from digest.store.db import Engine
from digest.tokens import make_bounce_token

log = logging.getLogger("digest.outgoing")


def dkim_signer(config: Config) -> DkimSigner | None:
    """The DKIM signer of ``[digest] dkim_*`` (RSA, plus Ed25519 when configured; the key files are read here,
    once), or None when not configured. Digests and service mails both sign through it."""
    return DkimSigner.from_config(config)


def envelope_sender(config: Config, delivery_id: int | None = None, *, secret: str | None = None) -> str:
    """The SMTP MAIL FROM of every mail of ours.

    A digest (``delivery_id``) goes out with a VERP sender when ``[bounces] address`` is set,
    ``bounces+<signed delivery id>@domain``, so that a bounce names its delivery however mangled the DSN is;
    everything else (service mails, no bounce address) with the bare address of ``smtp.from``. ``secret``:
    the signing key when the caller holds it already (read from the config otherwise).
    """
    address = config.bounces.address
    if delivery_id is None or not address:
        return _bare_address(config.smtp.from_)
    local, _, domain = address.rpartition("@")
    token = make_bounce_token(secret if secret is not None else config.secret_key(), delivery_id)
    return f"{local}+{token}@{domain}"


@lru_cache(maxsize=64)  # asked for every message of a run: parseaddr costs more than its headers
def _bare_address(value: str) -> str:
    return parseaddr(value)[1]


def envelope_domain(config: Config) -> str:
    """The domain of the sender: the right-hand side of every Message-ID."""
    return envelope_sender(config).rpartition("@")[2] or "localhost"


@dataclass
class ServiceMail:
    """Builds and sends service mails through ``transport`` (an SMTP pool, a file transport, a test fake)."""

    config: Config
    transport: Transport
    clock: Clock = utc_now
    dkim: DkimSigner | None = field(default=None)

    @classmethod
    def for_config(cls, config: Config, transport: Transport, clock: Clock = utc_now) -> ServiceMail:
        """The service mail of this config (DKIM key read once)."""
        return cls(config, transport, clock, dkim_signer(config))

    def build(self, recipient: str, rendered: RenderedEmail, unsubscribe_url: str | None) -> bytes:
        """The MIME bytes of one service mail: the headers and signature every mail of ours carries
        (``unsubscribe_url`` None: no List-Unsubscribe, for mails to the operator)."""
        return build_message(
            rendered,
            Envelope(
                sender=self.config.smtp.from_,
                recipient=recipient,
                list_id=self.config.digest.list_id,
                unsubscribe_url=unsubscribe_url,
                unsubscribe_mailto=self.config.digest.unsubscribe_mailto,
                message_id=make_message_id(envelope_domain(self.config)),
                date=self.clock(),
            ),
            dkim=self.dkim,
        )

    async def send(
        self, recipient: str, rendered: RenderedEmail, unsubscribe_url: str | None, kind: str
    ) -> SendOutcome:
        """Send one service mail (``kind`` names it in the log: "confirmation mail to subscriber 7"). Never raises: the outcome says what happened."""
        try:
            message = self.build(recipient, rendered, unsubscribe_url)
        except DigestError as exc:  # an address or URL unusable in a header
            log.error("%s could not be built: %s", kind, exc)
            return SendOutcome("permanent", None, str(exc))
        try:
            outcome = await self.transport.send(envelope_sender(self.config), recipient, message)
        except DeliveryError as exc:  # raised before DATA: certainly not sent
            log.error("%s not sent: %s", kind, exc)
            return SendOutcome("temporary", None, f"not sent: {exc}")
        if outcome.status == "sent":
            log.info("%s sent", kind)
        else:
            log.warning("%s not accepted: %s %s %s", kind, outcome.status, outcome.code, outcome.reply)
        return outcome


async def alert_admin(service: ServiceMail, engine: Engine, day: date, problem: str, detail: str) -> bool:
    """Mail the admin about a problem, at most once per problem per day. True when a mail went out.

    The alert row is written first, so ``/healthz`` shows the problem even when the mail cannot go out (and
    a later alert for the same problem that day tries the mail again).
    """
    config, now = service.config, service.clock()
    if not alerts.record_alert(engine, day, problem, detail, now):
        log.info("alert %s for %s already raised today", problem, day)
        return False
    admin = config.digest.admin_email
    if not admin:
        return False
    rendered = render_admin_alert(f"{config.digest.title}: {problem} problem on {day}", detail)
    # No List-Unsubscribe: the operator cannot unsubscribe from alerts, and a link to the site's root
    # would offer a one-click POST to a page that does not take one.
    outcome = await service.send(admin, rendered, None, f"admin alert ({problem}) mail")
    if outcome.status != "sent":
        return False
    alerts.mark_alert_sent(engine, day, problem, service.clock())
    return True
