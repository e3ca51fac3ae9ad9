"""Email address normalisation and validation (pure: never a DNS lookup).

Every address that enters the database goes through :func:`normalize_email`, so one person is one row
whatever case or Unicode form they typed, and no address can smuggle a header line into a mail.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from digest.errors import SubscriberError

#: RFC 5321 caps a path at 256 octets; anything far longer is hostile, not a typo.
MAX_INPUT_LENGTH = 320
_FORBIDDEN = frozenset('\r\n\0"<>,;\\')


def normalize_email(value: str) -> str:
    """The canonical form of ``value``: trimmed, domain in ASCII (IDNA), everything lower case.

    Refused with SubscriberError: CR/LF/NUL or other control characters, quotes, display names and angle
    brackets, lists, over-long input, internationalised local parts (not every SMTP server speaks SMTPUTF8),
    special-use domains (``.invalid``, ``localhost``) and anything email-validator finds wrong.
    The local part is lower-cased too: providers treat it case-insensitively in practice, and two rows for
    ``Ann@x.org`` and ``ann@x.org`` would mean two digests for one person.
    """
    if not isinstance(value, str):
        raise SubscriberError(f"{value!r} is not a valid email address: expected text")
    shown = value if len(value) <= 80 else value[:77] + "..."
    if len(value) > MAX_INPUT_LENGTH:
        raise SubscriberError(f"{shown!r} is not a valid email address: it is too long")
    # Checked before stripping: a trailing CR or LF is an injection attempt, not white space to forgive.
    candidate = value.strip(" ")
    if not candidate:
        raise SubscriberError("'' is not a valid email address: it is empty")
    if any(c in _FORBIDDEN or ord(c) < 32 or ord(c) == 127 or c.isspace() for c in candidate):
        raise SubscriberError(
            f"{shown!r} is not a valid email address: write only the address, like ann@example.org"
        )
    try:
        valid = validate_email(
            candidate,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_display_name=False,
            allow_domain_literal=False,
            allow_empty_local=False,
        )
    except EmailNotValidError as exc:
        raise SubscriberError(f"{shown!r} is not a valid email address: {exc}") from None
    return valid.ascii_email.lower() if valid.ascii_email else valid.normalized.lower()
