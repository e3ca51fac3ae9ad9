"""A scraped paper full of NUL, control and bidi characters never stops a run, on SQLite and PostgreSQL.

PostgreSQL refuses NUL in text columns: before the source schema cleaned every field, one such paper made
`digest run` fail for everybody, every retry.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pipeline_helpers import DAY, mails_to, make_config, subscribe
from smtp_server import FaultySmtpServer
from test_run import run_once

from digest.demo.snapshot_server import SnapshotServer
from digest.store import db
from digest.store.tables import paper

HF_DAY = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "hf"
HF_DAY = HF_DAY / "api_daily_papers_date-2026-08-21.json"
#: Every C0 and C1 control, DEL, the bidi controls and marks, and the line separators.
CONTROLS = [
    chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
]
CONTROLS += ["\u200e", "\u200f", "\u061c", "\u2028", "\u2029"]
POISON = "\x00\u202e\x1b[2J\x9b\r"


def _items() -> list[dict[str, Any]]:
    return list(json.loads(HF_DAY.read_text(encoding="utf-8")))


def poison(item: dict[str, Any], text: str) -> dict[str, Any]:
    """``item`` with ``text`` in every text field of the paper (before, inside or instead of the value)."""
    item = copy.deepcopy(item)
    p = item["paper"]
    for holder in (item, p):
        holder["title"] = f"{text}{holder['title']}{text}"
        holder["summary"] = f"{holder['summary'][:40]}{text}{holder['summary'][40:]}"
    p["ai_summary"] = f"{text}{p.get('ai_summary', '')}"
    p["ai_keywords"] = [f"{text}{k}" for k in p.get("ai_keywords", [])] + [text]
    p["authors"] = [{**a, "name": f"{a['name']}{text}"} for a in p["authors"]] + [{"name": text}]
    for holder in (item, p):
        if holder.get("organization"):
            holder["organization"] = {"name": f"goo{text}gle", "fullname": f"Goo{text}gle"}
    p["githubRepo"] = f"https://github.com/{text}x/y"
    p["projectPage"] = f"{text}https://example.org/"
    item["thumbnail"] = f"https://cdn.example.org/{text}.png"
    return item


@pytest.fixture
def server(smtp_server: Any) -> FaultySmtpServer:
    return smtp_server()  # type: ignore[no-any-return]


async def test_a_paper_with_nul_and_controls_in_every_field_does_not_stop_the_run(
    tmp_path: Path, server: FaultySmtpServer, db_url: str
) -> None:
    items = _items()
    items[0] = poison(items[0], POISON)  # EnvHarness: matched by ada's "agent*"
    with SnapshotServer() as hf:
        hf.add_day(DAY, items)
        config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
        engine = db.open_database(config.database_url)
        subscribe(engine, "ada@example.org", "agent*")
        subscribe(engine, "cy@example.org", "title:video")  # does not match the poisoned paper
        report = await run_once(config, engine, server)
    assert report.status == "done", report
    assert report.papers_fetched == 17
    assert len(mails_to(server.messages, "ada@example.org")) == 1
    assert len(mails_to(server.messages, "cy@example.org")) == 1
    with engine.connect() as conn:
        row = conn.execute(sa.select(paper).where(paper.c.id == "2608.19880")).one()
    stored = json.dumps([str(v) for v in row], ensure_ascii=False)
    assert not any(c in stored for c in "\x00\u202e\x1b\x9b\r")
    assert row.title == "[2JEnvHarness: Awakening Static Worlds for Agent Learning[2J"
    assert row.organization == "Goo[2Jgle" and row.github_repo == "https://github.com/[2Jx/y"
    ada = mails_to(server.messages, "ada@example.org")[0]
    assert "\u202e" not in ada.as_string() and "\x1b" not in ada.as_string()
    engine.dispose()


_fuzz_text = st.lists(
    st.one_of(st.sampled_from(CONTROLS), st.characters(exclude_categories=("Cs",))), max_size=30
).map("".join)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(texts=st.lists(_fuzz_text, min_size=3, max_size=3))
@example(texts=["\x00", "\u202e\x1b]52;c;eA==\x07", "".join(CONTROLS)])
def test_fuzzed_text_in_every_paper_field_still_mails_every_subscriber(
    tmp_path: Path, server: FaultySmtpServer, db_url: str, texts: list[str]
) -> None:
    # Each example is a new day with new arXiv ids, so every example plans and sends afresh.
    fuzz_test_state["n"] = n = fuzz_test_state.get("n", 0) + 1
    day = DAY + timedelta(days=n)
    items = []
    for i, item in enumerate(_items()):
        item = poison(item, texts[i % 3]) if i < 6 else copy.deepcopy(item)
        item["paper"]["id"] = f"26{n:02d}.{i:05d}"
        item["paper"]["submittedOnDailyAt"] = datetime(
            day.year, day.month, day.day, 8, tzinfo=UTC
        ).isoformat()
        items.append(item)
    with SnapshotServer() as hf:
        hf.add_day(day, items)
        config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
        engine = db.open_database(config.database_url)
        if n == 1 or not _has(engine, "ada@example.org"):
            subscribe(engine, "ada@example.org", "agent*")
            subscribe(engine, "cy@example.org", "title:video")
        before = len(server.messages)
        report = asyncio.run(run_once(config, engine, server, day))
        engine.dispose()
    assert report.status == "done", report
    got = server.messages[before:]
    assert len(mails_to(got, "ada@example.org")) == 1 and len(mails_to(got, "cy@example.org")) == 1


fuzz_test_state: dict[str, int] = {}


def _has(engine: sa.Engine, address: str) -> bool:
    from digest.store.tables import subscriber

    with engine.connect() as conn:
        return (
            conn.execute(sa.select(subscriber.c.id).where(subscriber.c.email == address)).first() is not None
        )
