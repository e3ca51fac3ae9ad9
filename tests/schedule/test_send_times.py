"""Slot selection as pure functions of ``now``: send times across the March and October DST changes in
Tokyo, Berlin and Los Angeles, weekly readers, catch-up, and at most one digest per local date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.errors import SubscriberError
from digest.models import Cadence
from digest.sendtimes import (
    Schedule,
    due_date,
    parse_send_time,
    parse_timezone,
    send_instant,
    send_time_choices,
    slot_groups,
)

UTCZ = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
LA = ZoneInfo("America/Los_Angeles")
TOKYO = ZoneInfo("Asia/Tokyo")


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


def quarter_hours(start: datetime, end: datetime) -> list[datetime]:
    out, now = [], start
    while now <= end:
        out.append(now)
        now += timedelta(minutes=15)
    return out


def simulate(
    subs: list[Schedule], start: datetime, end: datetime, cron_date: date | None = None
) -> list[tuple[int, date, datetime]]:
    """Run a slot on every quarter hour from start to end; the (id, local date, slot time) of each send."""
    sent: list[tuple[int, date, datetime]] = []
    done: set[tuple[int, date]] = set()
    for now in quarter_hours(start, end):
        for day, ids in slot_groups(subs, now, UTCZ, cron_date, done).items():
            for sid in ids:
                done.add((sid, day))
                sent.append((sid, day, now))
    return sent


def test_send_times_are_quarter_hours_written_hh_mm() -> None:
    assert parse_send_time("7:30") == "07:30"
    assert parse_send_time(" 23:45 ") == "23:45"
    for bad, words in [
        ("7:10", "quarter hour"),
        ("24:00", "00:00 to 23:45"),
        ("seven", "HH:MM"),
        ("7", "HH:MM"),
    ]:
        with pytest.raises(SubscriberError, match=words):
            parse_send_time(bad)
    assert send_time_choices()[:2] == ["00:00", "00:15"] and len(send_time_choices()) == 96


def test_time_zones_must_be_iana_names() -> None:
    assert parse_timezone("Asia/Tokyo") == "Asia/Tokyo"
    for bad in ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime"]:
        with pytest.raises(SubscriberError, match="time zone"):
            parse_timezone(bad)


@pytest.mark.parametrize(
    ("zone", "day", "expected_local"),
    [
        # Spring forward: 02:00-03:00 does not exist; 02:30 sends at the first valid minute, 03:00.
        (BERLIN, date(2026, 3, 29), (2026, 3, 29, 3, 0)),
        (LA, date(2026, 3, 8), (2026, 3, 8, 3, 0)),
    ],
)
def test_a_send_time_skipped_by_dst_sends_at_the_next_valid_minute(
    zone: ZoneInfo, day: date, expected_local: tuple[int, ...]
) -> None:
    assert send_instant(day, "02:30", zone) == at(zone, *expected_local)


def test_a_send_time_that_happens_twice_is_its_first_occurrence() -> None:
    # Berlin 2026-10-25: 02:30 happens at 00:30 UTC (CEST) and at 01:30 UTC (CET).
    assert send_instant(date(2026, 10, 25), "02:30", BERLIN) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # Los Angeles 2026-11-01: 01:15 happens at 08:15 UTC (PDT) and 09:15 UTC (PST).
    assert send_instant(date(2026, 11, 1), "01:15", LA) == datetime(2026, 11, 1, 8, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        (BERLIN, datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)),
        (BERLIN, datetime(2026, 10, 23, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC)),
        (LA, datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)),
        (LA, datetime(2026, 10, 30, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)),
        (TOKYO, datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)),
        (TOKYO, datetime(2026, 10, 23, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC)),
    ],
)
@pytest.mark.parametrize("send_time", ["00:00", "01:15", "02:30", "07:00", "23:45"])
def test_every_local_day_gets_exactly_one_digest_at_its_hour_across_dst(
    zone: ZoneInfo, start: datetime, end: datetime, send_time: str
) -> None:
    sub = Schedule(1, send_time=send_time, timezone=zone.key)
    sent = simulate([sub], start, end)
    days = [day for _, day, _ in sent]
    assert len(days) == len(set(days)), "two digests on one local date"
    first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    for _, day, when in sent:
        assert first <= day <= last
        # Sent at the slot of its send time (or the first valid minute after it), never before; a time
        # already past when the simulation starts is caught up by the first slot.
        assert when == max(start, send_instant(day, send_time, zone)), (day, when)
    # Every whole local day inside the window got its digest.
    whole = {first + timedelta(days=i) for i in range(1, (last - first).days)}
    assert whole <= set(days)


def test_weekly_readers_get_theirs_on_their_weekday_at_their_hour() -> None:
    sub = Schedule(7, Cadence.WEEKLY, weekday=4, send_time="08:00", timezone="Asia/Tokyo")  # Friday
    sent = simulate([sub], datetime(2026, 10, 18, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    assert [(day, when) for _, day, when in sent] == [
        (date(2026, 10, 23), datetime(2026, 10, 22, 23, 0, tzinfo=UTC)),
        (date(2026, 10, 30), datetime(2026, 10, 29, 23, 0, tzinfo=UTC)),
    ]


def test_catch_up_after_downtime_sends_each_missed_subscriber_once() -> None:
    subs = [
        Schedule(1, send_time="06:00", timezone="Europe/Berlin"),
        Schedule(2, send_time="07:15", timezone="Europe/Berlin"),
        Schedule(3, send_time="20:00", timezone="Europe/Berlin"),
    ]
    # Down from 03:00 to 10:00 UTC: the first slot back plans the two missed ones, once, for today.
    back = datetime(2026, 8, 21, 10, 0, tzinfo=UTC)
    groups = slot_groups(subs, back, UTCZ, None)
    assert groups == {date(2026, 8, 21): [1, 2]}
    done = {(sid, day) for day, ids in groups.items() for sid in ids}
    assert slot_groups(subs, back + timedelta(minutes=15), UTCZ, None, done) == {}


def test_subscribers_without_a_send_time_follow_the_cron_date() -> None:
    cron_follower = Schedule(1)
    now = datetime(2026, 8, 21, 6, 0, tzinfo=UTC)
    assert due_date(cron_follower, now, UTCZ, None) is None  # today's cron has not fired yet
    assert due_date(cron_follower, now, UTCZ, date(2026, 8, 21)) == date(2026, 8, 21)
    weekly = Schedule(2, Cadence.WEEKLY, weekday=0)
    assert due_date(weekly, now, UTCZ, date(2026, 8, 21)) is None  # a Friday


def test_a_send_time_without_a_zone_uses_the_schedule_zone() -> None:
    sub = Schedule(1, send_time="07:00")
    assert due_date(sub, at(BERLIN, 2026, 8, 21, 6, 59), BERLIN, None) is None
    assert due_date(sub, at(BERLIN, 2026, 8, 21, 7, 0), BERLIN, None) == date(2026, 8, 21)


def test_tokyo_readers_get_their_local_date_while_it_is_still_yesterday_in_utc() -> None:
    sub = Schedule(1, send_time="07:00", timezone="Asia/Tokyo")
    now = datetime(2026, 8, 20, 22, 0, tzinfo=UTC)  # 07:00 on the 21st in Tokyo
    assert slot_groups([sub], now, UTCZ, None) == {date(2026, 8, 21): [1]}
