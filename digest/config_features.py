"""The sections of the optional features: [[channels]], [semantic], [bounces], [admin]."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from digest.config_base import PLACEHOLDER_SECRETS, PLAIN_ADDRESS, Section, read_secret
from digest.errors import ConfigError


class ChannelConfig(Section):
    """A ``[[channels]]`` entry: the day's papers matching ``rules`` posted to a team-chat webhook.

    The webhook URL is a secret (it is the only credential a Slack incoming webhook has): the file names
    the environment variable that holds it, like every other secret.
    """

    name: Annotated[str, Field(min_length=1, max_length=64)]
    rules: Annotated[list[str], Field(min_length=1)]
    webhook_url_env: str
    format: Literal["slack", "json"] = "slack"
    send_time: str | None = None
    max_papers: Annotated[int, Field(ge=1, le=500)] = 30

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"expected letters, digits, '-', '_' or '.', like 'lab-slack', got {v!r}")
        return v

    @field_validator("webhook_url_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(
                f"expected the NAME of an environment variable like 'LAB_SLACK_WEBHOOK_URL', got {v!r} "
                "(the URL itself is a secret and never sits in the file)"
            )
        return v

    @field_validator("send_time")
    @classmethod
    def _send_time(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", v):
            raise ValueError(f"expected HH:MM (24-hour, in [schedule] timezone), got {v!r}")
        return v

    def webhook_url(self, path: Path, index: int) -> str:
        """The webhook URL from ``$webhook_url_env`` or ``$webhook_url_env_FILE``; ConfigError when unset
        or not an http(s) URL (the message names the variable, never the value)."""
        key = f"channels.{index}.webhook_url_env"
        url = read_secret(self.webhook_url_env, path, key, required=True) or ""
        if not (url.startswith("https://") or url.startswith("http://")) or any(c in url for c in "\r\n\0 "):
            raise ConfigError([f"{path}: {key}: ${self.webhook_url_env} is not an http(s) URL"])
        return url


class SemanticConfig(Section):
    """like: rules ("more like this"): needs the optional extra, pip install 'paper-digest[semantic]'."""

    enabled: bool = False
    threshold: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.55


class BouncesConfig(Section):
    """Where bounces and complaints come back (DESIGN section 12). Every way in is off until configured."""

    address: str | None = None
    lmtp_listen: str | None = None
    imap_url_env: str | None = None
    imap_folder: str = "INBOX"
    imap_poll_s: Annotated[float, Field(ge=5, le=86400)] = 300
    webhook_secret_env: str | None = None
    soft_threshold: Annotated[float, Field(gt=0, le=1000)] = 5
    hard_threshold: Annotated[int, Field(ge=1, le=100)] = 1

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return None
        local, _, domain = v.rpartition("@")
        # The local part gets "+<token>" appended: it must stay a plain dot-atom of at most 64 characters.
        if not PLAIN_ADDRESS.fullmatch(v) or "+" in local or len(local) > 30:
            raise ValueError(
                f"expected a plain address like 'bounces@lists.example.org' (no '+', a local part of at "
                f"most 30 characters), got {v!r}"
            )
        return f"{local}@{domain.lower()}"

    @field_validator("lmtp_listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is None:
            return None
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
            raise ValueError(f"expected host:port like '127.0.0.1:8024', got {v!r}")
        return v

    @property
    def lmtp_address(self) -> tuple[str, int] | None:
        """(host, port) of the LMTP listener, or None when it is off."""
        if self.lmtp_listen is None:
            return None
        host, _, port = self.lmtp_listen.rpartition(":")
        return host.strip("[]"), int(port)

    def imap_url(self, path: Path) -> str | None:
        """The bounce mailbox URL (imaps://user:password@host/folder), or None when IMAP polling is off."""
        if not self.imap_url_env:
            return None
        return read_secret(self.imap_url_env, path, "bounces.imap_url_env", required=True)

    def webhook_secret(self, path: Path) -> str | None:
        """The shared secret of POST /webhooks/bounce, or None when the webhook is off."""
        if not self.webhook_secret_env:
            return None
        secret = read_secret(self.webhook_secret_env, path, "bounces.webhook_secret_env", required=True)
        if secret is None or len(secret) < 16 or secret.lower() in PLACEHOLDER_SECRETS:
            raise ConfigError(
                [
                    f"{path}: bounces.webhook_secret_env: the secret is a placeholder or shorter than 16 characters"
                ]
            )
        return secret


class AdminConfig(Section):
    """The operator console at /admin (off unless this section exists)."""

    username: Annotated[str, Field(min_length=1, max_length=64)] = "admin"
    #: The argon2 hash ('digest admin-password' prints one) comes from this variable or NAME_FILE.
    password_hash_env: str = "DIGEST_ADMIN_PASSWORD_HASH"
    idle_timeout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    max_failures_per_account: Annotated[int, Field(ge=1, le=1000)] = 5
    max_failures_per_ip: Annotated[int, Field(ge=1, le=10000)] = 20
    lockout_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15

    @field_validator("username")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not v.isprintable() or v.strip() != v:
            raise ValueError("must be printable, without leading or trailing spaces")
        return v

    def password_hash(self, path: Path) -> str:
        """The argon2 hash from ``$password_hash_env`` or its ``_FILE``; ConfigError when unset or not argon2."""
        key = "admin.password_hash_env"
        value = read_secret(self.password_hash_env, path, key, required=True)
        if not value or not value.startswith("$argon2"):
            raise ConfigError([f"{path}: {key}: expected an argon2 hash; 'digest admin-password' prints one"])
        return value


class WorkersConfig(Section):
    """``[workers]``: PostgreSQL scale-out through procrastinate (``digest worker``)."""

    enabled: bool = False
    #: Outbox rows per delivery job.
    chunk_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    #: A worker silent (no heartbeat) this long is taken for dead and its jobs are run again elsewhere.
    stalled_after_s: Annotated[float, Field(ge=2, le=3600)] = 30
