"""The DigestError tree, the one place where every error the project raises on purpose is defined.

Every error an operator or a user can fix is a DigestError; its message says what to fix in one line
(a RuleError adds the rule and a caret line). The CLI turns any DigestError into that message and exit 1;
anything else is a bug and keeps its traceback.

::

    DigestError            base: the operator or the user can act on it
    ├── ConfigError        config.toml missing, unreadable or invalid (one ``file: key: problem`` per line)
    ├── RuleError          a keyword rule does not parse (the rule is quoted with a caret)
    ├── SourceError        the paper source answered something we cannot trust
    ├── StoreError         the database cannot be reached or migrated
    ├── TokenError         a signed link is forged, damaged, expired or replaced (``reason`` says which)
    ├── DeliveryError      mail could not be handed to the SMTP server (``permanent``, ``code``)
    ├── SubscriberError    a subscriber operation was refused (bad address, unknown, config-managed)
    ├── RunLockedError     another process holds the run for this date
    └── ServeError         ``digest serve`` cannot start (the web address cannot be bound)
"""

from __future__ import annotations

from typing import Literal

#: Why a link was refused: the web answers 404 for ``invalid`` and 410 for the others.
TokenReason = Literal["invalid", "expired", "replaced", "revoked"]


class DigestError(Exception):
    """Base of every error the operator or user can act on."""


class ConfigError(DigestError):
    """The configuration file is missing, unreadable, or invalid.

    ``problems`` holds one ``file: key: problem`` line per problem found.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class RuleError(DigestError):
    """A keyword rule cannot be parsed.

    The message quotes the rule with a caret under ``position`` and says what was expected.
    """

    def __init__(self, rule: str, position: int, problem: str) -> None:
        self.rule = rule
        self.position = max(0, min(position, len(rule)))
        self.problem = problem
        super().__init__(self.render())

    def render(self) -> str:
        # The rule is shown on its own line so the caret lines up whatever precedes the message.
        shown = self.rule.replace("\n", " ").replace("\r", " ").replace("\t", " ")
        return f"{self.problem}\n  {shown}\n  {' ' * self.position}^"


class SourceError(DigestError):
    """The paper source answered something we cannot trust (the site changed, or it is down)."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{url}: {problem}")


class StoreError(DigestError):
    """The database cannot be reached or migrated."""


class TokenError(DigestError):
    """A signed token is forged, damaged, expired, or no longer valid.

    ``reason`` says which, so callers never parse the message: ``invalid`` (forged, damaged, of another
    purpose), ``expired``, ``replaced`` (a newer mail carries the link that works), ``revoked`` (the
    subscriber or its data is gone).
    """

    def __init__(self, message: str, reason: TokenReason = "invalid") -> None:
        self.reason: TokenReason = reason
        super().__init__(message)


class DeliveryError(DigestError):
    """Mail could not be handed to the SMTP server."""

    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None) -> None:
        self.permanent = permanent
        self.code = code
        super().__init__(message)


class SubscriberError(DigestError):
    """A subscriber operation was refused (bad address, unknown subscriber, config-managed)."""


class RunLockedError(DigestError):
    """Another process holds the run for this date."""


class ServeError(DigestError):
    """`digest serve` cannot start (the web address cannot be bound)."""
