"""``GET /healthz``: the last run and the recent alerts, details only for a caller on this machine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from digest.store.db import Engine
from digest.store.run_status import latest_run, recent_alerts
from digest.web.site import SiteDep

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request, site: SiteDep) -> JSONResponse:
    """Always 200. Public callers get states and counts; details (errors, SMTP replies, alert text)
    only go to a caller on this machine (the container's health check, an operator's curl)."""
    return JSONResponse(health(site.engine, site.clock(), details=site.is_local(request)))


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
