"""[[channels]]: each day's papers posted once per channel to a real HTTP server on loopback, with the
claim/retry discipline of mail (429 + Retry-After, 5xx, timeouts retried; 4xx failed + admin alert)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from channels_helpers import DAY, HOOK_ENV, NOW, channel, make_config
from webhook_server import Reply, WebhookServer

from digest.channels.post import ChannelResult, PostOptions, post_channels
from digest.config import Config
from digest.mailer import SmtpPool
from digest.models import Paper, RunReport
from digest.pipeline import RunOptions, run_digest
from digest.store import db
from digest.store.papers import upsert_papers
from digest.store.settings import pause_sending, release_sending
from digest.store.tables import alert, channel_post


@dataclass
class FakeTime:
    """A clock that a sleep moves forward (so backoffs are checked, not waited for)."""

    now: datetime = NOW
    waits: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@dataclass
class Alerts:
    raised: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, problem: str, detail: str) -> None:
        self.raised.append((problem, detail))


def papers(n: int, day: Any = DAY, word: str = "agent") -> list[Paper]:
    return [
        Paper(
            id=f"2608.{10000 + i}",
            title=f"Paper {i} about {word}s",
            summary=f"We study {word} number {i}.",
            daily_date=day,
            upvotes=500 - i,
            authors=("Ann Author",),
            github_repo="https://github.com/example/code" if i == 0 else None,
        )
        for i in range(n)
    ]


def posts(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(channel_post).order_by(channel_post.c.id))]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, hook: WebhookServer) -> str:
    url = hook.url()
    monkeypatch.setenv(HOOK_ENV, url)
    return url


def opts(t: FakeTime, **kw: Any) -> PostOptions:
    return PostOptions(retry_base_s=1.0, sleep=t.sleep, timeout_s=kw.pop("timeout_s", 5.0), **kw)


@dataclass
class Lab:
    """A config with its channels, its database holding the day's papers, and a fake clock."""

    config: Config
    engine: sa.Engine
    t: FakeTime

    async def post(self, day: date = DAY, alert: Alerts | None = None, **options: Any) -> list[ChannelResult]:
        """``post_channels`` on the fake clock, backoffs counted instead of waited; ``options`` for opts()."""
        return await post_channels(
            self.config,
            self.engine,
            day,
            alert=alert or Alerts(),
            clock=self.t,
            options=opts(self.t, **options),
        )

    async def run_day(self, smtp: Any, runs: int = 1) -> list[RunReport]:
        """``digest run`` of DAY, ``runs`` times, mailing through the loopback SMTP server ``smtp``."""
        async with SmtpPool(smtp.settings()) as pool:
            options = RunOptions(retry_base_s=0.05)
            return [
                await run_digest(self.config, self.engine, DAY, pool, options=options) for _ in range(runs)
            ]


OpenLab = Callable[..., Lab]


@pytest.fixture
def open_lab(tmp_path: Path) -> Iterator[OpenLab]:
    """``open_lab(*channels, n_papers=2, db_url=None, now=NOW, **config)``: the default channel is "lab" for
    ``agent*``; ``config`` is make_config's (``hf_url``, ``smtp_port``, sections). With ``n_papers=0`` the
    papers come from a run's fetch. Its engines are disposed of at the end of the test."""
    engines: list[sa.Engine] = []

    def make(
        *chans: dict[str, Any],
        n_papers: int = 2,
        db_url: str | None = None,
        now: datetime = NOW,
        **config: Any,
    ) -> Lab:
        settings = make_config(tmp_path, db_url=db_url, channels=list(chans) or [channel()], **config)
        engine = db.open_database(settings.database_url)
        engines.append(engine)
        if n_papers:
            upsert_papers(engine, papers(n_papers), NOW)
        return Lab(settings, engine, FakeTime(now))

    yield make
    for engine in engines:
        engine.dispose()


async def test_the_days_papers_are_posted_once_per_channel_by_the_run_and_never_again(
    open_lab: OpenLab, hf: Any, smtp_server: Any, hook: WebhookServer, env: str, db_url: str
) -> None:
    server = smtp_server()
    lab = open_lab(
        channel("lab", "agent*"),
        channel("raw", "agent*", fmt="json"),
        n_papers=0,
        db_url=db_url,
        hf_url=hf.base_url,
        smtp_port=server.port,
    )
    report, again = await lab.run_day(server, runs=2)
    assert report.status == "done"
    assert again.status == "done"
    # A second run of the date (another process, a retry) posts nothing more.
    await post_channels(lab.config, lab.engine, DAY, alert=Alerts())
    assert len(hook.posts) == 2
    slack = next(p.json for p in hook.posts if "blocks" in p.json)
    raw = next(p.json for p in hook.posts if "papers" in p.json)
    assert raw["channel"] == "raw" and raw["date"] == DAY.isoformat()
    ids = [p["id"] for p in raw["papers"]]
    assert "2608.19880" in ids  # EnvHarness: "LLM agents"
    assert all(p["why"] for p in raw["papers"])
    assert any("2608.19880" in b.get("text", {}).get("text", "") for b in slack["blocks"])
    assert {r["state"] for r in posts(lab.engine)} == {"sent"}
    # The next day's window still holds the 21st: its papers are not posted again.
    await post_channels(lab.config, lab.engine, DAY + timedelta(days=1), alert=Alerts())
    assert len(hook.posts) == 2
    assert [r["state"] for r in posts(lab.engine)][-2:] == ["skipped", "skipped"]


async def test_nothing_is_posted_while_sending_is_paused_and_the_post_goes_after_the_release(
    open_lab: OpenLab, hook: WebhookServer, env: str, db_url: str
) -> None:
    lab = open_lab(n_papers=3, db_url=db_url)
    assert pause_sending(lab.engine, by="admin", reason="test", now=NOW)
    [held] = await lab.post()
    assert held.state != "sent" and hook.posts == []
    assert release_sending(lab.engine)
    [result] = await lab.post()
    assert result.state == "sent" and len(hook.posts) == 1


async def test_a_429_waits_as_long_as_retry_after_says_then_posts(
    open_lab: OpenLab, hook: WebhookServer, env: str, db_url: str
) -> None:
    lab = open_lab(n_papers=3, db_url=db_url)
    hook.script(Reply(429, "rate_limited", retry_after="7"))
    [result] = await lab.post()
    assert result.state == "sent"
    assert lab.t.waits and lab.t.waits[0] >= 7  # Retry-After beats the 1 s backoff
    assert [p.answered for p in hook.posts] == [429, 200]
    assert hook.posts[0].body == hook.posts[1].body
    assert posts(lab.engine)[0]["attempts"] == 2


async def test_5xx_and_timeouts_are_retried_with_growing_backoff(
    open_lab: OpenLab, hook: WebhookServer, env: str
) -> None:
    lab = open_lab()
    hook.script(Reply(500, "oops"), Reply(503, "busy"), Reply(200, delay_s=1.5))
    [result] = await lab.post(timeout_s=0.5, attempts_per_call=6)
    # 500, 503, then a timeout (the server answered too late), then accepted.
    assert result.state == "sent", result
    assert lab.t.waits == [1.0, 2.0, 4.0]
    assert len(hook.posts) >= 3 and hook.accepted[-1].answered == 200
    assert posts(lab.engine)[0]["attempts"] == 4


async def test_a_post_still_failing_is_left_for_a_later_call_that_finishes_it(
    open_lab: OpenLab, hook: WebhookServer, env: str
) -> None:
    lab = open_lab()
    hook.script(Reply(500), Reply(500))
    [first] = await lab.post(attempts_per_call=2)
    assert first.state == "retry"
    row = posts(lab.engine)[0]
    assert row["next_attempt_at"] is not None
    # Too early: nothing is posted before the backoff is over.
    [early] = await lab.post(attempts_per_call=1, max_wait_s=0)
    assert early.state == "retry" and len(hook.posts) == 2
    lab.t.now += timedelta(minutes=1)
    [later] = await lab.post()
    assert later.state == "sent" and len(hook.accepted) == 1


async def test_a_4xx_is_recorded_as_failed_alerts_the_admin_by_mail_and_is_not_retried(
    open_lab: OpenLab, hf: Any, smtp_server: Any, hook: WebhookServer, env: str, db_url: str
) -> None:
    server = smtp_server()
    lab = open_lab(n_papers=0, db_url=db_url, hf_url=hf.base_url, smtp_port=server.port)
    hook.script(Reply(404, "no_service"))
    [report] = await lab.run_day(server)
    assert report.status == "done"  # the mail went out whatever the channel did
    [row] = posts(lab.engine)
    assert row["state"] == "failed" and "404 no_service" in row["last_reply"]
    admin = [m for m in server.messages if "ops@example.org" in m.recipients]
    assert len(admin) == 1
    mail = email.message_from_bytes(admin[0].data, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "channel lab" in str(mail["Subject"]) and "404 no_service" in text
    assert "s3cr3t" not in text
    with lab.engine.connect() as conn:
        assert conn.execute(sa.select(alert.c.problem)).scalars().all() == ["channel lab"]
    await post_channels(lab.config, lab.engine, DAY, alert=Alerts())
    assert len(hook.posts) == 1, "a refused post is never retried"


async def test_a_split_post_resumes_after_the_messages_already_accepted(
    open_lab: OpenLab, hook: WebhookServer, env: str
) -> None:
    lab = open_lab(channel("lab", "agent*", max_papers=120), n_papers=120)
    hook.script(Reply(200), Reply(500))  # the second of three messages fails once
    [result] = await lab.post()
    assert result.state == "sent"
    bodies = [p.json for p in hook.accepted]
    assert len(bodies) == 3, "each of the three messages is accepted exactly once"
    assert [len(b["blocks"]) for b in bodies] == [50, 50, 23]
    titles = [b["blocks"][0]["text"]["text"] for b in bodies]
    assert [t_.endswith(f"({n}/3)*") for n, t_ in enumerate(titles, 1)] == [True] * 3
    shown = [blk["text"]["text"] for b in bodies for blk in b["blocks"][1:]]
    assert len(shown) == 120 and len(set(shown)) == 120


async def test_two_processes_posting_the_same_day_post_it_once(
    open_lab: OpenLab, hook: WebhookServer, env: str, db_url: str
) -> None:
    one = open_lab(n_papers=3, db_url=db_url)
    two = db.create_engine(one.config.database_url)
    hook.script(Reply(200, delay_s=0.3))
    results = await asyncio.gather(
        post_channels(one.config, one.engine, DAY, alert=Alerts()),
        post_channels(one.config, two, DAY, alert=Alerts()),
    )
    assert len(hook.posts) == 1
    assert sorted(r[0].state for r in results) in (["busy", "sent"], ["sent", "sent"])
    two.dispose()


async def test_a_channel_with_a_send_time_waits_for_it(
    open_lab: OpenLab, hook: WebhookServer, env: str
) -> None:
    lab = open_lab(
        channel("late", "agent*", send_time="18:30"),
        schedule={"timezone": "Europe/Paris"},
        now=datetime(2026, 8, 21, 16, 29, tzinfo=UTC),  # 18:29 in Paris
    )
    [early] = await lab.post()
    assert early.state == "waiting" and hook.posts == []
    lab.t.now += timedelta(minutes=1)
    [due] = await lab.post(plan_untimed=False)
    assert due.state == "sent" and len(hook.posts) == 1


async def test_the_webhook_url_never_reaches_a_log_line_or_a_stored_reply(
    open_lab: OpenLab,
    hook: WebhookServer,
    env: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("digest").propagate = True
    lab = open_lab(channel("lab", "agent*"), channel("dead", "agent*"))
    hook.script(Reply(500, "oops"), Reply(403, "invalid_token"))
    alerts = Alerts()
    await lab.post(alert=alerts)
    # A connection refused on a closed port: the exception text would name the URL.
    monkeypatch.setenv(HOOK_ENV, "http://127.0.0.1:9/services/T1/B1/another-s3cr3t")
    await lab.post(DAY + timedelta(days=1), alert=alerts)
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(alerts.raised) + repr(posts(lab.engine))
    assert "s3cr3t" not in text
    assert "127.0.0.1:" + str(hook.port) not in text
    assert "channel lab" in text  # the logs and alerts do name the channel


async def test_serves_tick_posts_channels_whose_time_came_and_leaves_the_others_to_the_run(
    open_lab: OpenLab, hook: WebhookServer, env: str
) -> None:
    from digest.channels.post import channel_tick
    from digest.service import DigestService, make_scheduler

    lab = open_lab(
        channel("timed", "agent*", send_time="08:00"),
        channel("with-run", "agent*"),
        now=NOW + timedelta(hours=2),  # 09:00 UTC
    )
    results = {
        r.channel: r.state for r in await channel_tick(lab.config, lab.engine, alert=Alerts(), clock=lab.t)
    }
    assert results == {"timed": "sent", "with-run": "waiting"}
    assert len(hook.posts) == 1 and hook.posts[0].json["blocks"][0]["text"]["text"].endswith(
        "(Fri 21 Aug 2026)*"
    )
    jobs = {job.id for job in make_scheduler(DigestService(lab.config, lab.engine)).get_jobs()}
    assert "channels" in jobs


async def test_a_post_still_waiting_at_the_end_of_its_day_is_finished_the_next_day(
    open_lab: OpenLab, hook: WebhookServer, env: str
) -> None:
    lab = open_lab()
    hook.script(Reply(503))
    [first] = await lab.post(attempts_per_call=1)
    assert first.state == "retry"
    lab.t.now += timedelta(days=1)
    [today] = await lab.post(DAY + timedelta(days=1))
    assert today.state == "skipped", "its papers belong to the waiting post, not to today's"
    assert [r["state"] for r in posts(lab.engine)] == ["sent", "skipped"]
    assert len(hook.accepted) == 1


async def test_a_channel_rule_this_version_cannot_read_never_stops_the_run(
    open_lab: OpenLab, hook: WebhookServer, env: str
) -> None:
    lab = open_lab(channel("bad", "agent AND (x"), channel("good", "agent*"))
    results = {r.channel: r.state for r in await post_channels(lab.config, lab.engine, DAY, alert=Alerts())}
    assert results == {"bad": "error", "good": "sent"}
