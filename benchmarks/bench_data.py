"""What the delivery benchmarks share (not a benchmark itself: scripts/bench skips it).

The day (120 papers made from the captured HF days), the eight rule sets, the subscriber rows, the
configuration every benchmark runs with (as TOML text: the worker processes read it from a file), and a
filled database that each measured run gets a fresh copy of. The console tests take ``subscriber_row`` from
here too (tests/console_seed.py), so a raw insert looks the same everywhere.

digest is imported inside the functions: a ``--baseline`` child imports it from another checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

DAY = date(2026, 8, 21)
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = (ROOT.parent / "shared" / "fixtures" / "hf", ROOT / "digest" / "demo_data")
PAPERS = 120
MAX_PAPERS = 30
# Eight rule sets, each matching 30+ of the 120 papers (so every digest is a full 30-paper one).
RULES: list[list[str]] = [
    ["model*"],
    ["learning OR data", "agent*"],
    ["language OR vision OR video"],
    ["agent* OR reasoning OR benchmark*", "title:model*"],
    ["video OR image* OR diffusion OR visual", "training"],
    ["training OR performance OR tasks"],
    ["method* OR approach* OR framework"],
    ["llm* OR large OR generation", "abstract:results"],
]
#: Where nothing listens (the discard port): for a benchmark that neither fetches nor sends.
NOWHERE_URL, NOWHERE_PORT = "http://127.0.0.1:9", 9


def day_items(day: date = DAY) -> list[dict[str, Any]]:
    """120 papers for ``day`` (HF API items): every captured paper, then variants of them (new ids, rotated
    titles, other upvotes)."""
    real: list[dict[str, Any]] = []
    for folder in FIXTURES:
        for path in sorted(folder.glob("api_daily_papers_date-*.json")):
            real.extend(json.loads(path.read_text("utf-8")))
        if real:
            break
    items: list[dict[str, Any]] = []
    stamp = f"{day.isoformat()}T00:00:00.000Z"
    for i in range(PAPERS):
        item = json.loads(json.dumps(real[i % len(real)]))
        paper = item["paper"]
        if i >= len(real):
            paper["id"] = f"2608.{90000 + i:05d}"
            words = paper["title"].split()
            paper["title"] = " ".join(words[i % len(words) :] + words[: i % len(words)])
            paper["upvotes"] = (paper.get("upvotes", 0) * 7 + i) % 97
        paper["submittedOnDailyAt"] = stamp
        items.append(item)
    return items


def subscriber_row(email: str, now: Any, **values: Any) -> dict[str, Any]:
    """A ``subscriber`` row for a raw insert: active, daily, not managed by the config, unless ``values`` say
    otherwise."""
    return {
        "email": email,
        "status": "active",
        "cadence": "daily",
        "weekday": 0,
        "managed_by_config": False,
        "created_at": now,
        "updated_at": now,
        "hard_bounces": 0,
        "token_version": 0,
        **values,
    }


def fill_subscribers(url: str, n: int) -> None:
    """Migrate the database at ``url`` and add n active daily subscribers ``reader000000@example.org``...,
    subscriber i with rule set ``RULES[i % 8]``."""
    import sqlalchemy as sa

    from digest.store import db
    from digest.store.tables import rule, subscriber

    engine = db.open_database(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            subscriber.insert(), [subscriber_row(f"reader{i:06d}@example.org", now) for i in range(n)]
        )
        ids = [r for (r,) in conn.execute(sa.select(subscriber.c.id).order_by(subscriber.c.id))]
        conn.execute(
            rule.insert(),
            [
                {"subscriber_id": sid, "position": pos, "name": "", "query": query}
                for i, sid in enumerate(ids)
                for pos, query in enumerate(RULES[i % len(RULES)])
            ],
        )
    engine.dispose()


def config_text(
    db_url: str,
    secret_file: str | Path,
    *,
    hf_url: str = NOWHERE_URL,
    smtp_port: int = NOWHERE_PORT,
    **sections: Mapping[str, Any],
) -> str:
    """The configuration (TOML) of a benchmark: HF at ``hf_url`` with no look-back, plain SMTP to
    127.0.0.1:``smtp_port`` over 4 connections, the secret key from ``secret_file``, ``max_papers = 30``.
    ``sections`` add or override keys, e.g. ``smtp={"pool_size": 2}``, ``workers={"enabled": True}``."""
    config: dict[str, dict[str, Any]] = {
        "source": {"base_url": hf_url, "lookback_days": 0},
        "database": {"url": db_url},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "pool_size": 4},
        "security": {"secret_key_env": "BENCH_UNSET", "secret_key_file": str(secret_file)},
        "digest": {"max_papers": MAX_PAPERS},
    }
    for name, keys in sections.items():
        config[name] = {**config.get(name, {}), **keys}
    return "\n".join(
        f"[{name}]\n"
        # TOML has no null: a key given as None is left out (its default applies)
        + "".join(f"{key} = {_toml_value(value)}\n" for key, value in keys.items() if value is not None)
        for name, keys in config.items()
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # a JSON string (ASCII, escaped) is a TOML basic string


def load_config_text(text: str, folder: str | Path) -> Any:
    """The Config of ``config_text(...)``, as if read from ``folder/config.toml``."""
    from digest.config_load import parse_config

    return parse_config(tomllib.loads(text), Path(folder) / "config.toml")


Fill = Callable[[str, int], None]


@contextmanager
def database_copies(
    kind: str, tmp: Path, n: int, fill: Fill = fill_subscribers, prefix: str = "bench"
) -> Iterator[Callable[[str], str]]:
    """Fill one database with ``fill(url, n)``; yields ``copy(name) -> url``, a fresh copy of it for each
    measured run (a run writes its rows). SQLite: file copies in ``tmp``. PostgreSQL ($DIGEST_TEST_PG_URL):
    databases created from the filled one as their TEMPLATE, all dropped at the end."""
    if kind == "sqlite":
        template = tmp / f"template-{uuid.uuid4().hex[:8]}.db"
        fill(f"sqlite:///{template}", n)

        def copy_sqlite(name: str) -> str:
            shutil.copy(template, tmp / f"{name}.db")
            return f"sqlite:///{tmp / name}.db"

        yield copy_sqlite
        return
    with scratch_databases(prefix) as create:
        fill(create("tmpl"), n)
        yield lambda name: create(name, template="tmpl")


@contextmanager
def scratch_databases(prefix: str) -> Iterator[Callable[..., str]]:
    """Yields ``create(name, template=None) -> url``: a new database on the PostgreSQL server of
    $DIGEST_TEST_PG_URL (a copy of the one created as ``template``, when given). All are dropped at the end."""
    import sqlalchemy as sa

    base = os.environ.get("DIGEST_TEST_PG_URL")
    if not base:
        raise SystemExit("PostgreSQL: set $DIGEST_TEST_PG_URL (DIGEST_TEST_PG_URL=$(scripts/start-postgres))")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    tag = uuid.uuid4().hex[:8]
    made: list[str] = []

    def create(name: str, template: str | None = None) -> str:
        made.append(f"{prefix}_{tag}_{name}")
        copy_of = f' TEMPLATE "{prefix}_{tag}_{template}"' if template else ""
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{made[-1]}"{copy_of}')
        return sa.make_url(base).set(database=made[-1]).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with admin.connect() as conn:
            for name in reversed(made):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
