"""`digest init` and `digest check-config`: create a workspace, summarise a config with secrets masked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from digest.channels.post import channel_summary
from digest.config import Config
from digest.config_load import EXAMPLE_CONFIG, load_config, new_secret_key
from digest.errors import ConfigError, DigestError
from digest.store import db, job_queue
from digest.subscriptions import check_config_subscribers

SECRET_FILE = "data/secret_key"


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    wrote_config: bool
    secret_path: Path
    wrote_secret: bool
    database: str


def init_workspace(path: Path, *, force: bool = False) -> InitResult:
    """Write the config (from the commented example) and a fresh secret key, then create/upgrade the database."""
    wrote_config = False
    if force or not path.exists():
        text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
        marker = '# secret_key_file = "data/secret_key"'
        if marker not in text:  # the example and this code travel together
            raise DigestError("config.example.toml lost its secret_key_file line")
        text = text.replace(marker, f'secret_key_file = "{SECRET_FILE}"')
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{path}: cannot write ({exc.strerror})"]) from None
        wrote_config = True
    cfg = load_config(path)
    secret_path = cfg.resolve(cfg.security.secret_key_file or SECRET_FILE)
    wrote_secret = False
    if not secret_path.exists():
        secret_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_secret_key() + "\n")
        wrote_secret = True
    cfg.secret_key()  # the key in place must be usable
    engine = db.open_database(cfg.database_url)
    if cfg.workers.enabled:
        job_queue.ensure_schema(engine)
    engine.dispose()
    return InitResult(path, wrote_config, secret_path, wrote_secret, db.redact(cfg.database_url))


def _mask(value: str | None) -> str:
    if not value:
        return "(not set)"
    return f"set ({len(value)} characters, hidden)"


def config_summary(cfg: Config) -> list[tuple[str, str]]:
    """Key/value lines describing the config; secrets are only ever shown as set/not set."""
    secret = cfg.secret_key()
    check_config_subscribers(cfg)
    rows = [
        (
            "source",
            f"{cfg.source.base_url} (look back {cfg.source.lookback_days} days, min upvotes {cfg.source.min_upvotes})",
        ),
        (
            "schedule",
            f"{cfg.schedule.cron!r} in {cfg.schedule.timezone}; skip empty: {cfg.schedule.skip_empty}",
        ),
        ("database", db.redact(cfg.database_url)),
        ("smtp", f"{cfg.smtp.host}:{cfg.smtp.port} security={cfg.smtp.security} pool={cfg.smtp.pool_size}"),
        ("smtp user", cfg.smtp.username or "(no AUTH)"),
        ("smtp password", _mask(cfg.smtp_password()) if cfg.smtp.username else "(not needed)"),
        ("from", cfg.smtp.from_),
        ("web", f"{cfg.web.base_url} (listening on {cfg.web.host}:{cfg.web.port})"),
        ("secret key", _mask(secret)),
        ("digest", f"max {cfg.digest.max_papers} papers; List-Id {cfg.digest.list_id}"),
        ("admin", cfg.digest.admin_email or "(no alerts)"),
        (
            "dkim",
            f"{cfg.digest.dkim_selector}._domainkey.{cfg.digest.dkim_domain}"
            if cfg.digest.dkim_key_file
            else "off",
        ),
        ("config subscribers", str(len(cfg.subscribers))),
        *channel_summary(cfg),  # [[channels]] (digest/channels/post.py)
    ]
    if cfg.admin is not None:  # the console: its password hash must be readable before serve starts
        cfg.admin_password_hash()
        rows.append(
            ("console", f"/admin for {cfg.admin.username!r}; hash from ${cfg.admin.password_hash_env}")
        )
    return rows
