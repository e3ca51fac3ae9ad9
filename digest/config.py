"""Configuration: the validated, frozen Config and its sections (``config_load`` reads the TOML file).

Secrets never sit in the file: the file names an environment variable, and the secret is read from that
variable or from the file named by ``NAME_FILE`` (:func:`read_secret`).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from digest.config_base import (
    PLACEHOLDER_SECRETS,
    PLAIN_ADDRESS,
    Section,
    check_cron,
    check_http_url,
    crontab_for_apscheduler,
    is_loopback,
    read_secret,
)
from digest.config_features import AdminConfig, BouncesConfig, ChannelConfig, SemanticConfig, WorkersConfig
from digest.errors import ConfigError

DEFAULT_CONFIG_NAME = "config.toml"
MIN_SECRET_LENGTH = 32
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SourceConfig(Section):
    base_url: str = "https://huggingface.co"
    lookback_days: Annotated[int, Field(ge=0, le=30)] = 3
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 20
    deadline_s: Annotated[float, Field(gt=0, le=3600)] = 300
    min_upvotes: Annotated[int, Field(ge=0)] = 0
    user_agent: str = "paper-digest/0.1 (+https://github.com/paper-digest; self-hosted digest)"
    #: When ``serve`` fetches the source, in its own job (cron in ``[schedule] timezone``): a send never
    #: waits for Hugging Face.
    refresh: str = "0 * * * *"

    @field_validator("refresh")
    @classmethod
    def _refresh(cls, v: str) -> str:
        return check_cron(v)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return check_http_url(v)


class ScheduleConfig(Section):
    cron: str = "0 7 * * *"
    timezone: str = "UTC"
    skip_empty: bool = True
    catch_up: bool = True

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like 'Europe/Paris')") from None
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseConfig(Section):
    url: str = "sqlite:///data/digest.db"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.startswith("postgres://"):  # the spelling some hosting platforms hand out
            v = "postgresql+psycopg://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v[len("postgresql://") :]
        if not (v.startswith("sqlite://") or v.startswith("postgresql+psycopg://")):
            raise ValueError(f"expected a sqlite:/// or postgresql+psycopg:// URL, got {_redact_url(v)!r}")
        return v


class SmtpConfig(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str = "DIGEST_SMTP_PASSWORD"
    from_: str = Field(default="Paper Digest <digest@example.org>", alias="from")
    pool_size: Annotated[int, Field(ge=1, le=64)] = 4
    rate_per_s: Annotated[float, Field(ge=0)] = 0
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30
    ca_file: str | None = None
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 5
    retry_hours: Annotated[float, Field(gt=0, le=24 * 14)] = 48
    hard_bounce_limit: Annotated[int, Field(ge=1, le=100)] = 3

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> SmtpConfig:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                f"security = 'none' sends mail in clear and is allowed only to a loopback host, not {self.host!r}"
                " (use 'starttls' or 'tls')"
            )
        return self

    @field_validator("from_")
    @classmethod
    def _from(cls, v: str) -> str:
        if any(c in v for c in "\r\n\0"):
            raise ValueError("must be one line")
        if "@" not in v:
            raise ValueError(f"expected an address like 'Paper Digest <digest@example.org>', got {v!r}")
        return v


class WebConfig(Section):
    base_url: str = "https://digest.example.org"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    trust_proxy: bool = False
    #: The reverse proxies whose X-Forwarded-For is believed (with trust_proxy): addresses or networks.
    trusted_proxies: list[str] = ["127.0.0.0/8", "::1/128"]

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"expected IP addresses or networks like '10.0.0.0/8', got {item!r}"
                ) from None
        return [item.strip() for item in v]

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` parsed."""
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        v = check_http_url(v).rstrip("/")
        path = urlsplit(v).path
        if path or "?" in v or "#" in v:
            raise ValueError(
                f"expected the site's root like 'https://digest.example.org', got {v!r} "
                "(the pages are served at the root: give the app its own host name)"
            )
        return v


class SecurityConfig(Section):
    secret_key_env: str = "DIGEST_SECRET_KEY"
    secret_key_file: str | None = None


class DigestConfig(Section):
    max_papers: Annotated[int, Field(ge=1, le=500)] = 30
    list_id: str = "paper-digest.example.org"
    postal_address: str = "Paper Digest, 1 Example Street, 00000 Example City"
    admin_email: str | None = None
    unsubscribe_mailto: str | None = None
    dkim_key_file: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_ed25519_key_file: str | None = None
    dkim_ed25519_selector: str | None = None
    title: str = "Paper digest"

    @field_validator("list_id", "postal_address", "title")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if any(c in v for c in "\r\n\0"):
            raise ValueError("must be one line")
        return v

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, v: str) -> str:
        if not _DOMAIN.fullmatch(v):
            raise ValueError(f"expected a domain you control, like 'digest.example.org', got {v!r}")
        return v

    @field_validator("admin_email")
    @classmethod
    def _admin(cls, v: str | None) -> str | None:
        if v is not None and not PLAIN_ADDRESS.fullmatch(v):
            raise ValueError(f"expected a plain address like 'ops@example.org', got {v!r}")
        return v

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailto(cls, v: str | None) -> str | None:
        if v is None:
            return None
        address = v[len("mailto:") :] if v.lower().startswith("mailto:") else v
        # The whole value goes into the List-Unsubscribe header: printable ASCII, no spaces or brackets.
        if not PLAIN_ADDRESS.fullmatch(address.split("?", 1)[0]) or not re.fullmatch(
            r"[\x21-\x3b=\x3f-\x7e]+", address
        ):
            raise ValueError(
                f"expected an address like 'unsubscribe@example.org' (a ?subject= must be URL-encoded), got {v!r}"
            )
        return "mailto:" + address

    @model_validator(mode="after")
    def _dkim_complete(self) -> DigestConfig:
        given = [self.dkim_key_file, self.dkim_selector, self.dkim_domain]
        if any(given) and not all(given):
            raise ValueError("DKIM needs all three of dkim_key_file, dkim_selector and dkim_domain")
        ed = [self.dkim_ed25519_key_file, self.dkim_ed25519_selector]
        if any(ed) and not (all(ed) and all(given)):
            raise ValueError(
                "an Ed25519 DKIM signature needs dkim_ed25519_key_file and dkim_ed25519_selector, "
                "beside the RSA key (dkim_key_file, dkim_selector, dkim_domain)"
            )
        return self


class SubscriberEntry(Section):
    email: str
    rules: Annotated[list[str], Field(min_length=1)]
    name: str | None = None
    cadence: Literal["daily", "weekly"] = "daily"
    weekday: str = "mon"
    # Own send time ("HH:MM", quarter hours) and IANA zone; checked with the rules (check_config_subscribers).
    send_time: str | None = None
    timezone: str | None = None

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, v: str) -> str:
        if v.lower()[:3] not in WEEKDAYS:
            raise ValueError(f"expected one of {', '.join(WEEKDAYS)}, got {v!r}")
        return v.lower()[:3]


class Config(Section):
    """The whole validated configuration. ``path`` is where it was read from (relative paths resolve there)."""

    source: SourceConfig = SourceConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    database: DatabaseConfig = DatabaseConfig()
    smtp: SmtpConfig = SmtpConfig()
    web: WebConfig = WebConfig()
    security: SecurityConfig = SecurityConfig()
    digest: DigestConfig = DigestConfig()
    semantic: SemanticConfig = SemanticConfig()
    bounces: BouncesConfig = BouncesConfig()
    subscribers: list[SubscriberEntry] = []
    channels: list[ChannelConfig] = []
    admin: AdminConfig | None = None
    workers: WorkersConfig = WorkersConfig()
    path: Path = Path(DEFAULT_CONFIG_NAME)

    @model_validator(mode="after")
    def _unique_channels(self) -> Config:
        names = [c.name for c in self.channels]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"channel names must be unique: {', '.join(twice)} appears more than once")
        return self

    @model_validator(mode="after")
    def _workers_need_postgres(self) -> Config:
        if self.workers.enabled and not self.database.url.startswith("postgresql"):
            raise ValueError(
                "workers.enabled: worker processes need PostgreSQL (database.url is SQLite); "
                "set enabled = false or use a postgresql+psycopg:// URL"
            )
        return self

    def channel(self, name: str) -> tuple[int, ChannelConfig]:
        """The ``[[channels]]`` entry called ``name`` and its index; ConfigError when there is none."""
        for i, entry in enumerate(self.channels):
            if entry.name == name:
                return i, entry
        known = ", ".join(c.name for c in self.channels) or "none configured"
        raise ConfigError([f"{self.path}: channels: no channel named {name!r} (known: {known})"])

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, p: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def database_url(self) -> str:
        """The database URL, with a relative SQLite path made relative to the config file."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(url[len(prefix) :]).absolute())
        return url

    def smtp_password(self) -> str | None:
        if not self.smtp.username:
            return None
        return read_secret(self.smtp.password_env, self.path, "smtp.password_env", required=True)

    def bounce_imap_url(self) -> str | None:
        """The bounce mailbox URL (imaps://user:password@host/folder), or None when IMAP polling is off."""
        return self.bounces.imap_url(self.path)

    def bounce_webhook_secret(self) -> str | None:
        """The shared secret of POST /webhooks/bounce, or None when the webhook is off."""
        return self.bounces.webhook_secret(self.path)

    def admin_password_hash(self) -> str:
        """The console's argon2 password hash (ConfigError when [admin] is set but the hash is missing)."""
        if self.admin is None:
            raise ConfigError([f"{self.path}: admin: the [admin] section is not configured"])
        return self.admin.password_hash(self.path)

    def secret_key(self) -> str:
        """The key that signs tokens: from the environment, else ``security.secret_key_file``."""
        key = read_secret(self.security.secret_key_env, self.path, "security.secret_key_env", required=False)
        if key is None and self.security.secret_key_file:
            file = self.resolve(self.security.secret_key_file)
            try:
                key = file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    [f"{self.path}: security.secret_key_file: cannot read {file} ({exc.strerror})"]
                ) from None
        if key is None:
            raise ConfigError(
                [
                    f"{self.path}: security.secret_key_env: set ${self.security.secret_key_env} "
                    f"(or ${self.security.secret_key_env}_FILE, or security.secret_key_file) to a random key; "
                    "'digest init' makes one"
                ]
            )
        if key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(
                [
                    f"{self.path}: security.secret_key_env: the secret key is a placeholder or shorter than "
                    f"{MIN_SECRET_LENGTH} characters; generate one with "
                    "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                ]
            )
        return key


_DOMAIN = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def _redact_url(url: str) -> str:
    """The URL with any password replaced, for error messages (passwords may hold '/' or '@')."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


__all__ = [
    "PLACEHOLDER_SECRETS",
    "AdminConfig",
    "BouncesConfig",
    "ChannelConfig",
    "Config",
    "crontab_for_apscheduler",
    "is_loopback",
    "read_secret",
]
