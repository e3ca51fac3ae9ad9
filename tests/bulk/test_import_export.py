"""Bulk subscribers: import checks every row first (FILE:LINE: problem, carets for rules) and writes all or
nothing; export reads back what import wrote; unsubscribed and bounced addresses stay so. SQLite and
PostgreSQL (the ``engine`` fixture runs on both)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.bulk import ImportProblems, export_subscribers, import_file
from digest.errors import SubscriberError
from digest.models import SubscriberStatus
from digest.store.subscribers import add_subscriber, find_subscriber, list_subscribers, set_status
from digest.store.tables import subscriber

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HEADER = "email,name,rules,cadence,weekday,send_time,timezone,status\n"


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def clock() -> datetime:
    return NOW


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(subscriber)).scalar_one())


def test_an_export_imports_back_into_an_empty_database_unchanged(
    tmp_path: Path, engine: sa.Engine, sqlite_engine: sa.Engine
) -> None:
    path = write(
        tmp_path,
        'ada@example.org,Ada,"diffusion; ""flow matching""",daily,,07:30,Asia/Tokyo,active\n'
        "bob@example.org,,agent*,weekly,fri,,,paused\n"
        "cy@example.org,Cy,org:Google,daily,mon,23:45,America/Los_Angeles,unsubscribed\n",
    )
    result = import_file(engine, path, confirmed=True, clock=clock)
    assert (result.created, result.updated) == (3, 0)
    exported = export_subscribers(engine, "csv")
    assert (
        exported.splitlines()[1]
        == 'ada@example.org,Ada,"diffusion; ""flow matching""",daily,mon,07:30,Asia/Tokyo,active'
    )
    again = tmp_path / "again.csv"
    again.write_text(exported, encoding="utf-8")
    import_file(sqlite_engine, again, confirmed=True, clock=clock)
    assert export_subscribers(sqlite_engine, "csv") == exported
    data = json.loads(export_subscribers(engine, "json"))
    assert data[1] == {
        "email": "bob@example.org",
        "name": None,
        "rules": ["agent*"],
        "cadence": "weekly",
        "weekday": 4,
        "send_time": None,
        "timezone": None,
        "status": "paused",
    }
    ada = find_subscriber(engine, "ada@example.org")
    assert ada is not None and (ada.send_time, ada.timezone) == ("07:30", "Asia/Tokyo")


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_imported(
    tmp_path: Path, engine: sa.Engine
) -> None:
    path = write(
        tmp_path,
        "ok@example.org,,diffusion,,,,,\n"
        "not-an-address,,diffusion,,,,,\n"
        "\n"
        'rules@example.org,,"diffusion; title:(agent OR",,,,,\n'
        "time@example.org,,diffusion,,,07:10,,\n"
        "zone@example.org,,diffusion,,,07:15,Mars/Olympus,\n"
        "ok@example.org,,agents,,,,,\n"
        "back@example.org,,diffusion,hourly,,,,\n",
    )
    with pytest.raises(ImportProblems) as caught:
        import_file(engine, path, confirmed=True, clock=clock)
    text = str(caught.value)
    lines = [p.split(": ")[0] for p in caught.value.problems]
    assert lines == [f"{path}:{n}" for n in (3, 5, 6, 7, 8, 9)]
    rule_problem = caught.value.problems[1]
    assert (
        "rule 2" in rule_problem and "title:(agent OR" in rule_problem and rule_problem.rstrip().endswith("^")
    )
    assert "already on line 2" in caught.value.problems[4]
    assert text.endswith("nothing was imported")
    assert count(engine) == 0


def test_a_file_without_the_required_columns_is_refused(tmp_path: Path, engine: sa.Engine) -> None:
    with pytest.raises(ImportProblems, match=r"people.csv:1: missing column\(s\) rules"):
        import_file(engine, write(tmp_path, "a@example.org\n", header="email\n"), clock=clock)
    with pytest.raises(SubscriberError, match="no subscribers"):
        import_file(engine, write(tmp_path, ""), clock=clock)


def test_an_import_never_reactivates_unsubscribed_or_bounced_addresses(
    tmp_path: Path, engine: sa.Engine
) -> None:
    for address, status in [
        ("gone@example.org", SubscriberStatus.UNSUBSCRIBED),
        ("dead@example.org", SubscriberStatus.BOUNCED),
    ]:
        sub = add_subscriber(engine, address, ["old"], now=NOW, status=SubscriberStatus.ACTIVE)
        set_status(engine, sub.id, status, now=NOW)
    add_subscriber(engine, "reader@example.org", ["old"], now=NOW, status=SubscriberStatus.ACTIVE)
    path = write(
        tmp_path,
        "gone@example.org,,new,,,,,active\ndead@example.org,,new,,,,,\nreader@example.org,,new,,,08:00,,\n",
    )
    result = import_file(engine, path, confirmed=True, clock=clock)
    assert sorted(result.kept) == ["dead@example.org", "gone@example.org"] and result.updated == 1
    by_email = {s.email: s for s in list_subscribers(engine)}
    assert by_email["gone@example.org"].status == "unsubscribed" and by_email["gone@example.org"].rules == [
        "old"
    ]
    assert by_email["dead@example.org"].status == "bounced"
    assert by_email["reader@example.org"].rules == ["new"]


def test_without_confirmed_new_addresses_wait_for_confirmation_and_readers_stay_active(
    tmp_path: Path, engine: sa.Engine
) -> None:
    add_subscriber(engine, "reader@example.org", ["old"], now=NOW, status=SubscriberStatus.ACTIVE)
    path = write(tmp_path, "new@example.org,,x,,,,,\nreader@example.org,,y,,,,,\n")
    import_file(engine, path, clock=clock)
    by_email = {s.email: s.status for s in list_subscribers(engine)}
    assert by_email == {"new@example.org": "pending", "reader@example.org": "active"}


@pytest.mark.parametrize(
    "address",
    [
        "Ann.Lee+digest@Example.ORG",
        "ann..lee@example.org",
        ".ann@example.org",
        "ann.@example.org",
        "a" * 65 + "@example.org",
        "ann@EXAMPLE.org",
        "ann_o-k@example.org",
        "ann@bücher.example",
        "ann@localhost",
        "ann@example.invalid",
        " ann@example.org",
        "ann@example.org\n",
        "@example.org",
        "ann\u00e9@example.org",
        "a@b@example.org",
    ],
)
def test_the_bulk_address_check_gives_the_verdict_of_normalize_email(address: str) -> None:
    from digest.addresses import normalize_email
    from digest.bulk import _Checker

    checker = _Checker()
    for warm in ("first@example.org", "first@bücher.example", "first@EXAMPLE.org"):
        checker.email(warm)  # the domains are now known: the fast path is taken where it applies
    try:
        expected: str | None = normalize_email(address)
    except SubscriberError:
        expected = None
    try:
        got: str | None = checker.email(address)
    except SubscriberError:
        got = None
    assert got == expected
