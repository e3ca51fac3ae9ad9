"""Handing finished messages to an SMTP server: a pooled sender, and a file transport for dry runs.

``outcome`` (what a send means, the Transport type, the settings), ``connect`` (one secured, authenticated
connection), ``pool`` (the shared connections), ``files`` (the file transport).

``SmtpPool`` keeps ``pool_size`` aiosmtplib connections open and shares them among any number of
concurrent ``send`` calls. Each call answers with a ``SendOutcome`` for its one recipient:

- ``sent``: the server accepted the message (250 after the end of DATA);
- ``temporary``: 4xx, 552 (RFC 5321 section 4.5.3.1.10 says to treat it as temporary), or the connection
  failed before the end of DATA: try again later;
- ``permanent``: 5xx other than 552: do not try again;
- ``uncertain``: the connection dropped (or timed out) after the end of DATA was sent but before the reply.
  The server may have queued the message; RFC 1047 says not to resend blindly.

Problems that concern the whole run rather than one recipient (the server does not offer STARTTLS, the
certificate fails verification, AUTH is refused, the server refuses our sender address, the server cannot
be reached at start) raise ``DeliveryError`` instead. A ``DeliveryError`` from ``send`` always happens
before the DATA command, so that message was certainly not delivered.
"""

from __future__ import annotations

from digest.mailer.files import FileTransport
from digest.mailer.outcome import SendOutcome, SmtpSettings, Status, Transport, classify
from digest.mailer.pool import SmtpPool, prepare_data

__all__ = [
    "FileTransport",
    "SendOutcome",
    "SmtpPool",
    "SmtpSettings",
    "Status",
    "Transport",
    "classify",
    "prepare_data",
]
