"""Each day's matching papers posted once per ``[[channels]]`` entry, with the outbox discipline of mail.

For a channel and a day: the plan (papers of the window its rules match, never posted to it before) is
written as a ``channel_post`` row first; the unique (channel, date) key makes it once per day whatever
number of processes or reruns. The row is claimed with a conditional update before each attempt; every
message of a split post that is accepted is counted, so a retry resumes after it. 429 (honouring
Retry-After), 5xx, timeouts and connection errors are retried with exponential backoff; any other 4xx is
final: the post is recorded as failed and the admin is alerted. The webhook URL is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx

from digest.channels import webhook
from digest.channels.formats import ChannelDay, messages
from digest.config import ChannelConfig, Config
from digest.errors import ConfigError
from digest.models import DeliveryState, MatchedPaper, Paper, Rule
from digest.rules import BatchMatcher
from digest.store import channels as store
from digest.store.db import Engine
from digest.store.lookups import papers_by_ids
from digest.store.papers import load_papers

log = logging.getLogger("digest.channels")

Clock = Callable[[], datetime]
#: Mails the admin about a problem: ``alert(problem, detail)`` (the pipeline's one alert path).
Alert = Callable[[str, str], Awaitable[Any]]
#: Earlier posts are remembered this many days past the look-back, so a paper is never posted twice.
REMEMBER_DAYS = 7
#: Earlier days whose unfinished posts a call resumes (their retries give up after a day anyway).
RESUME_WINDOW = timedelta(days=2)
#: A post left ``sending`` this long belongs to a process that died: it becomes ``uncertain``.
STALE_AFTER = timedelta(minutes=10)

_FINAL = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.UNCERTAIN, DeliveryState.SKIPPED)


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class PostOptions:
    """Retry pacing (tests shorten it), and whether channels without a send time are planned.

    ``plan_untimed=False`` (the periodic tick) plans only channels with a ``send_time`` and resumes the
    others' retries: a channel without one is planned by the run, once the day's papers are fetched.
    """

    retry_base_s: float = 2.0
    attempts_per_call: int = 4
    #: A wait longer than this (a long Retry-After, a late backoff) is left to a later call.
    max_wait_s: float = 120.0
    give_up_after: timedelta = timedelta(hours=24)
    timeout_s: float = webhook.TIMEOUT_S
    sleep: Callable[[float], Awaitable[Any]] = field(default=asyncio.sleep)
    plan_untimed: bool = True


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """What happened to one channel: its post's state (or ``waiting``/``error``), papers, last reply."""

    channel: str
    state: str
    papers: int = 0
    reply: str = ""


async def post_channels(
    config: Config,
    engine: Engine,
    day: date,
    *,
    alert: Alert,
    clock: Clock = utc_now,
    options: PostOptions | None = None,
) -> list[ChannelResult]:
    """Post ``day``'s papers to every channel whose send time has come (the run hook, after the day's plan).

    Never raises for a webhook problem: the results say what happened.
    """
    if not config.channels:
        return []
    opts = options or PostOptions()
    store.recover_stale_posts(engine, clock(), STALE_AFTER)
    results: list[ChannelResult] = []
    async with httpx.AsyncClient(follow_redirects=False) as client:
        for index, channel in enumerate(config.channels):
            if not _time_has_come(config, channel, day, clock()):
                results.append(ChannelResult(channel.name, "waiting"))
                continue
            try:
                url = channel.webhook_url(config.path, index)
            except ConfigError as exc:  # names the variable, never a value
                await alert(f"channel {channel.name}", str(exc))
                results.append(ChannelResult(channel.name, "error", reply=str(exc)))
                continue
            poster = _Poster(config, engine, channel, url, client, alert, clock, opts)
            try:
                # Posts of the last days still waiting for a retry first (a day's end does not abandon them).
                for earlier in store.unfinished_days(engine, channel.name, day - RESUME_WINDOW, day):
                    await poster.run(earlier, plan=False)
                results.append(await poster.run(day, plan=opts.plan_untimed or channel.send_time is not None))
            except Exception as exc:  # one channel's trouble (a bug, the database) never stops the run
                log.exception("channel %s: could not post", channel.name)
                results.append(ChannelResult(channel.name, "error", reply=type(exc).__name__))
    return results


def _time_has_come(config: Config, channel: ChannelConfig, day: date, now: datetime) -> bool:
    if channel.send_time is None:
        return True
    hour, minute = (int(x) for x in channel.send_time.split(":"))
    due = datetime.combine(day, time(hour, minute), tzinfo=config.schedule.zone)
    return now >= due


def plan_papers(config: Config, engine: Engine, channel: ChannelConfig, day: date) -> list[str]:
    """The ids the channel's post of ``day`` carries: the window's papers its rules match that were never
    posted to it, most upvoted first (the same window and upvote floor as the mail's plan)."""
    start = day - timedelta(days=config.source.lookback_days)
    papers = load_papers(engine, start, day, min_upvotes=config.source.min_upvotes)
    if not papers:
        return []
    before = store.posted_ids(engine, channel.name, start - timedelta(days=REMEMBER_DAYS), day)
    matcher = BatchMatcher(papers)
    hits = [papers[i] for i in matcher.match(channel_rules(channel))]
    fresh = sorted((p for p in hits if p.id not in before), key=lambda p: (-p.upvotes, p.id))
    return [p.id for p in fresh]


def channel_rules(channel: ChannelConfig) -> list[Rule]:
    """The channel's rules as Rule objects (each labelled by its query)."""
    return [Rule(query=q) for q in channel.rules]


def channel_day(config: Config, channel: ChannelConfig, day: date, papers: Sequence[Paper]) -> ChannelDay:
    """What a post shows for these papers: each with why the channel's rules matched, capped at max_papers."""
    rules = channel_rules(channel)
    by_id = {m.paper.id: m for m in BatchMatcher(list(papers)).select(rules)}
    # A paper planned under rules changed since is still posted, without an explanation.
    matched = [by_id.get(p.id) or MatchedPaper(p, ()) for p in papers]
    shown = matched[: channel.max_papers]
    return ChannelDay(channel.name, day, shown, more=len(matched) - len(shown), title=config.digest.title)


@dataclass
class _Poster:
    config: Config
    engine: Engine
    channel: ChannelConfig
    url: str
    client: httpx.AsyncClient
    alert: Alert
    clock: Clock
    opts: PostOptions

    async def run(self, day: date, *, plan: bool) -> ChannelResult:
        name = self.channel.name
        post = store.get_post(self.engine, name, day)
        if post is None:
            if not plan:
                return ChannelResult(name, "waiting")
            ids = plan_papers(self.config, self.engine, self.channel, day)
            post = store.plan_post(self.engine, name, day, ids, self.clock())
        attempts = 0
        while post.state not in _FINAL:
            now = self.clock()
            if post.state == DeliveryState.RETRY and post.next_attempt_at and post.next_attempt_at > now:
                wait = (post.next_attempt_at - now).total_seconds()
                if wait > self.opts.max_wait_s or attempts >= self.opts.attempts_per_call:
                    break  # a later call (the next slot or run) takes it from here
                await self.opts.sleep(wait)
            else:
                if attempts >= self.opts.attempts_per_call:
                    break
                claimed = store.claim_post(self.engine, post, now)
                if claimed is None:
                    return ChannelResult(name, "busy", len(post.paper_ids))  # another process has it
                attempts += 1
                await self._attempt(claimed)
            fresh = store.get_post(self.engine, name, day)
            assert fresh is not None
            post = fresh
        return ChannelResult(name, post.state, len(post.paper_ids), post.last_reply or "")

    async def _attempt(self, post: store.Post) -> None:
        """Post the messages not accepted yet; settle the row as sent, retry or failed."""
        papers = {p.id: p for p in papers_by_ids(self.engine, post.paper_ids)}
        ordered = [papers[i] for i in post.paper_ids if i in papers]
        bodies = messages(
            self.channel.format, channel_day(self.config, self.channel, post.post_date, ordered)
        )
        sent = post.parts_sent
        for body in bodies[sent:]:
            answer = await webhook.post(self.client, self.url, body, self.opts.timeout_s)
            if answer.verdict != "posted":
                await self._failed(post, answer, sent, len(bodies))
                return
            sent += 1
            store.record_part(self.engine, post.id, sent, self.clock())
        reply = f"{len(bodies)} message{'s' if len(bodies) != 1 else ''} posted"
        store.settle_post(self.engine, post.id, DeliveryState.SENT, reply, self.clock())
        log.info("channel %s: posted %d papers for %s", self.channel.name, len(ordered), post.post_date)

    async def _failed(self, post: store.Post, answer: webhook.Answer, sent: int, total: int) -> None:
        name, now = self.channel.name, self.clock()
        where = f" (after {sent} of {total} messages)" if sent else ""
        first = post.first_attempt_at or now
        if answer.verdict == "retry" and now - first < self.opts.give_up_after:
            wait = self.opts.retry_base_s * 2 ** max(0, post.attempts - 1)
            if answer.retry_after_s is not None:
                wait = max(wait, answer.retry_after_s)
            wait = min(wait, 6 * 3600.0)
            log.warning(
                "channel %s: post of %s will be retried in %.0f s: %s",
                name,
                post.post_date,
                wait,
                answer.reply,
            )
            store.settle_post(
                self.engine,
                post.id,
                DeliveryState.RETRY,
                answer.reply + where,
                now,
                now + timedelta(seconds=wait),
            )
            return
        why = "refused" if answer.verdict == "refused" else "kept failing"
        detail = f"the webhook of channel {name} {why} the post of {post.post_date}{where}: {answer.reply}"
        log.error("channel %s: %s", name, detail)
        store.settle_post(self.engine, post.id, DeliveryState.FAILED, answer.reply + where, now)
        await self.alert(f"channel {name}", detail)


SAMPLE = Paper(
    id="2401.00001",
    title="A sample paper <for testing> the channel & its format",
    summary="This is a sample post from paper digest: if you can read it, the webhook works.",
    daily_date=date(2024, 1, 2),
    authors=("Ada Lovelace", "Alan Turing"),
    upvotes=42,
    ai_summary="A sample post from paper digest: the webhook works.",
)


async def post_sample(config: Config, name: str, *, timeout_s: float = webhook.TIMEOUT_S) -> webhook.Answer:
    """``digest channels test NAME``: post a sample to the channel now; records nothing."""
    index, channel = config.channel(name)
    url = channel.webhook_url(config.path, index)
    day = channel_day(config, channel, utc_now().date(), [SAMPLE])
    answer: webhook.Answer | None = None
    async with httpx.AsyncClient(follow_redirects=False) as client:
        for body in messages(channel.format, day):
            answer = await webhook.post(client, url, body, timeout_s)
            if answer.verdict != "posted":
                break
    assert answer is not None
    return answer


def channel_summary(config: Config) -> list[tuple[str, str]]:
    """check-config lines for ``[[channels]]``: the rules are validated, the webhook URL only reported as
    set or not set (never shown). ConfigError names the file, the key and the rule."""
    from digest.errors import RuleError
    from digest.rules import parse_rule

    problems: list[str] = []
    rows: list[tuple[str, str]] = []
    for i, channel in enumerate(config.channels):
        for j, query in enumerate(channel.rules):
            try:
                parse_rule(query)
            except RuleError as exc:
                problems.append(f"{config.path}: channels.{i}.rules.{j}: {exc}")
        try:
            channel.webhook_url(config.path, i)
            hook = f"${channel.webhook_url_env} set (hidden)"
        except ConfigError:
            hook = f"${channel.webhook_url_env} NOT SET"
        when = f"after {channel.send_time}" if channel.send_time else "with the run"
        rows.append(
            (
                f"channel {channel.name}",
                f"{channel.format}, {len(channel.rules)} rule{'' if len(channel.rules) == 1 else 's'}, {when}; {hook}",
            )
        )
    if problems:
        raise ConfigError(problems)
    return rows


#: How often ``serve`` looks for channels whose send time has come, and for posts waiting for a retry.
TICK = timedelta(minutes=5)


async def channel_tick(
    config: Config, engine: Engine, *, alert: Alert, clock: Clock = utc_now
) -> list[ChannelResult]:
    """The periodic job of ``serve``: post today's channels whose ``send_time`` has come, and finish posts
    waiting for a retry. Channels without a send time are planned by the day's run only (after its fetch)."""
    today = clock().astimezone(config.schedule.zone).date()
    try:
        return await post_channels(
            config, engine, today, alert=alert, clock=clock, options=PostOptions(plan_untimed=False)
        )
    except Exception:  # a scheduler job must not die: the next tick tries again
        log.exception("channel tick failed")
        return []


def add_channel_job(
    scheduler: Any, config: Config, engine: Engine, alert: Callable[[date], Alert], clock: Clock = utc_now
) -> None:
    """Add ``channel_tick`` every TICK to ``serve``'s APScheduler (only when ``[[channels]]`` exist).

    ``alert(day)`` gives the admin-alert function for that day (the server's one alert path)."""
    if not config.channels:
        return
    from apscheduler.triggers.interval import IntervalTrigger

    async def tick() -> None:
        today = clock().astimezone(config.schedule.zone).date()
        await channel_tick(config, engine, alert=alert(today), clock=clock)

    scheduler.add_job(
        tick,
        IntervalTrigger(seconds=TICK.total_seconds(), timezone=config.schedule.zone),
        id="channels",
        name="channel posts with a send time, and their retries",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
        replace_existing=True,
    )
