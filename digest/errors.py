"""The DigestError tree.

Every error an operator or a user can fix is a DigestError; its message says what to fix in one line
(a RuleError adds the rule and a caret line). The CLI turns any DigestError into that message and exit 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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
    """A signed token is forged, damaged, or expired."""


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
