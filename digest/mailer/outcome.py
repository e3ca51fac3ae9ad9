"""What a send means (``SendOutcome``, ``classify``), what can send (``Transport``), and how to reach the
SMTP server (``SmtpSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from digest.config import Config

Security = Literal["starttls", "tls", "none"]
Status = Literal["sent", "temporary", "permanent", "uncertain"]

# RFC 5321 4.5.3.1.10: 552 on RCPT/DATA was historically "too many recipients"/"storage exceeded" and
# clients are told to treat it as a temporary failure.
_TEMPORARY_5XX = frozenset({552})
_HEADER_BREAKERS = ("\r", "\n", "\0")


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What became of one message to one recipient."""

    status: Status
    code: int | None
    reply: str

    @property
    def final(self) -> bool:
        """True when the outcome must not be retried (sent, permanent, or uncertain)."""
        return self.status != "temporary"


def classify(code: int, reply: str) -> SendOutcome:
    """The outcome an SMTP reply code means for the message (2xx sent, 4xx and 552 temporary, 5xx permanent)."""
    if 200 <= code < 300:
        return SendOutcome("sent", code, reply)
    if 500 <= code < 600 and code not in _TEMPORARY_5XX:
        return SendOutcome("permanent", code, reply)
    # 4xx, 552, and anything malformed: the server did not take the message; trying again is safe.
    return SendOutcome("temporary", code, reply)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server (see the [smtp] section of the config)."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    ca_file: str | None = None
    pool_size: int = 4
    rate_per_s: float = 0.0
    local_hostname: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> SmtpSettings:
        """Settings from the validated config; the password comes from the environment (config.smtp_password())."""
        smtp = config.smtp
        return cls(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=config.smtp_password(),
            timeout_s=smtp.timeout_s,
            ca_file=str(config.resolve(smtp.ca_file)) if smtp.ca_file else None,
            pool_size=smtp.pool_size,
            rate_per_s=smtp.rate_per_s,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Transport(Protocol):
    """Anything that can take a message for one recipient: SmtpPool, FileTransport, a test's fake.

    ``send`` never raises for a per-recipient problem; a ``DeliveryError`` means the whole transport failed
    before DATA (the message was certainly not sent).
    """

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        """Hand over one message."""
        ...


def bad_address(address: str, role: str) -> SendOutcome | None:
    """An address that could inject SMTP commands is refused before anything is sent."""
    if not address or any(c in address for c in _HEADER_BREAKERS) or any(c in address for c in "<> \t"):
        return SendOutcome("permanent", None, f"invalid {role} address {address!r}")
    if role == "recipient" and "@" not in address:
        return SendOutcome("permanent", None, f"invalid recipient address {address!r}")
    return None
