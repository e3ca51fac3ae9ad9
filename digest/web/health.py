"""``GET /healthz``: 503 when the last run failed or the scheduled one did not succeed; the last run and the
recent alerts; details (and the reason) only for a caller on this machine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from digest.config import Config
from digest.scheduler import MISFIRE_GRACE_S, last_fire_time, make_trigger, run_date_for
from digest.store.db import Engine
from digest.store.run_status import latest_run, recent_alerts, run_status_and_heartbeat
from digest.store.runs import STALE_AFTER
from digest.web.site import SiteDep

router = APIRouter()

#: A scheduled run may start this late (APScheduler's misfire grace, plus a margin) and count as on time;
#: a longer run stays healthy while its heartbeat is fresh.
DUE_GRACE = timedelta(seconds=MISFIRE_GRACE_S, minutes=10)


@router.get("/healthz")
def healthz(request: Request, site: SiteDep) -> JSONResponse:
    """200 when healthy; 503 when the last run failed or the latest scheduled run has not succeeded (the
    Dockerfile's HEALTHCHECK then reports the container unhealthy). Public callers get states and counts;
    details (the reason, errors, SMTP replies, alert text) only go to a caller on this machine (the socket
    peer is loopback: the container's health check, an operator's curl)."""
    now, local = site.clock(), site.is_local(request)
    answer = health(site.engine, now, details=local)
    reason = unhealthy_reason(site.config, site.engine, now, since=site.started_at)
    if reason is None:
        return JSONResponse(answer)
    answer["status"] = "unhealthy"
    if local:
        answer["reason"] = reason
    return JSONResponse(answer, status_code=503)


def unhealthy_reason(config: Config, engine: Engine, now: datetime, *, since: datetime) -> str | None:
    """Why the service is unhealthy, or None: the last run failed, or the run of the latest scheduled
    time (``DUE_GRACE`` ago, and after ``since``, when this process started) is not done nor running."""
    last = latest_run(engine)
    if last is not None and last.status == "failed":
        return f"the last run (for {last.run_date}) failed"
    due = last_fire_time(make_trigger(config), now - DUE_GRACE)
    if due is None or due < since:
        return None  # nothing was due while this process was up: the next fire is judged
    day = run_date_for(config, due)
    row = run_status_and_heartbeat(engine, day)
    if row is None:
        return f"no run for {day}, due at {due.isoformat()}"
    status, beat = row
    if status == "done" or (status == "running" and beat is not None and now - beat < STALE_AFTER):
        return None
    return f"the run for {day}, due at {due.isoformat()}, is {status}, not done"


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _counts(report: Any) -> dict[str, int]:
    """The whole-number fields of a run report (sent, failed, ...): never its error text or problems."""
    if not isinstance(report, dict):
        return {}
    return {k: v for k, v in report.items() if isinstance(v, int) and not isinstance(v, bool)}


def health(engine: Engine, now: datetime, *, alert_hours: int = 24, details: bool = False) -> dict[str, Any]:
    """The last run and the alerts of the last ``alert_hours``.

    Without ``details`` (what the public gets): the overall status, the last run's date, status, finish time
    and counts, and each alert's day and problem key. Free text (the run's error, the report's problems, the
    alert detail) can quote SMTP hosts, user names and relay replies, so it is only added with ``details``.
    """
    last = latest_run(engine)
    alerts = recent_alerts(engine, now - timedelta(hours=alert_hours))
    last_run: dict[str, Any] | None = None
    if last is not None:
        last_run = {
            "date": _iso(last.run_date),
            "status": last.status,
            "finished_at": _iso(last.finished_at),
            "counts": _counts(last.report),
        }
        if details:
            last_run.update(started_at=_iso(last.started_at), error=last.error, report=last.report)
    alert_list: list[dict[str, Any]] = []
    for a in alerts:
        item: dict[str, Any] = {"day": _iso(a.day), "problem": a.problem}
        if details:
            item.update(detail=a.detail, created_at=_iso(a.created_at))
        alert_list.append(item)
    status = "ok"
    if alert_list or (last_run and last_run["status"] == "failed"):
        status = "alert"
    answer: dict[str, Any] = {"status": status, "last_run": last_run, "alert": alert_list or None}
    if details:
        answer["now"] = now.isoformat()
    return answer
