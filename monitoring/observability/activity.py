"""The delta view: what changed in a time window (``delta``, ``/activity/``, ``/api/activity/``),
and the recent events listed beside it on ``/activity/``.

Each section comes from an activity source, ``fn(since, until) -> dict`` such as
``{"added": 3, "processed": 10, "failed": 0}``, registered by the app that owns the data
(``opsconsole.registries``); check runs and freshness are this app's own. A source may also
register ``events(since, until, limit)``: the things that happened, each with a link, which
``recent_events`` merges newest first. Check status changes are this app's own events; alert
events are registered with the alerts section (``MonitoringConfig.ready``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from monitoring.kinds import get_kind
from monitoring.models import (
    AlertEvent,
    AlertEventKind,
    Check,
    CheckRun,
    CheckStatus,
)
from opsconsole.env import parse_duration
from opsconsole.registries import ActivityEvent, activity_sources, event_sources

MAX_WINDOW_SECONDS = 7 * 86400
# The event list: the last day, at most this many events. Each source is asked for the same
# limit (one query each, newest first), so the merge never needs more than that from any.
EVENT_WINDOW = timedelta(hours=24)
EVENT_LIMIT = 100
# Section names whose plain words would mislead: the "checks" counts are runs by status.
SECTION_TITLES = {"checks": "Check runs"}

log = logging.getLogger(__name__)


def words(key: str) -> str:
    """``items_finished`` -> ``Items finished``: labels on pages are words, not identifiers."""
    text = str(key).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _check_runs(since: datetime, until: datetime) -> dict[str, int]:
    counts = {status.value: 0 for status in CheckStatus if status != CheckStatus.PAUSED}
    rows = (
        CheckRun.objects.filter(created_at__gt=since, created_at__lte=until)
        .order_by()
        .values_list("status")
        .annotate(n=Count("*"))
    )
    for status, count in rows:
        counts[status] = count
    return counts


def _freshness(now: datetime) -> list[dict[str, Any]]:
    """The latest reading of each freshness check (their value is the data's age)."""
    unit = ""
    try:
        unit = get_kind("freshness").unit.strip()
    except Exception:  # noqa: BLE001 - the kind may not be installed; the rows still are
        unit = ""
    readings = []
    for check in Check.objects.filter(kind="freshness").order_by("component", "name"):
        readings.append(
            {
                "check": check.name,
                "component": check.component,
                "status": check.status,
                "value": check.last_value,
                "unit": unit,
                "message": check.last_message,
                "last_run_at": check.last_run_at.isoformat() if check.last_run_at else None,
                "checked_seconds_ago": round((now - check.last_run_at).total_seconds(), 1)
                if check.last_run_at
                else None,
            }
        )
    return readings


def collect_activity(window_seconds: float, now: datetime | None = None) -> dict[str, Any]:
    """What changed in the last ``window_seconds``: check runs by status, every registered
    section (backlog, alerts, batches, …) and the freshness of each freshness check.

    A section that fails reports its error instead of taking the whole view down.
    """
    now = now or timezone.now()
    since = now - timedelta(seconds=window_seconds)
    sections: dict[str, Any] = {"checks": _check_runs(since, now)}
    for name, source in sorted(activity_sources().items()):
        try:
            sections[name] = source(since, now)
        except Exception as exc:  # noqa: BLE001
            log.exception("activity section %s failed", name)
            sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "window_seconds": window_seconds,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "sections": sections,
        "freshness": _freshness(now),
    }


def labelled_sections(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """The delta view's sections as the page shows them: titles and labels in words, nested
    counts (``{"by_source": {...}}``) flattened into one line."""
    shown = []
    for name, counts in sections.items():
        rows = []
        for key, value in counts.items():
            if isinstance(value, dict):
                rows.append((words(key), None, [(str(k), v) for k, v in value.items()]))
            else:
                rows.append((words(key), value, None))
        shown.append({"name": name, "title": SECTION_TITLES.get(name, words(name)), "rows": rows})
    return shown


# --- events ------------------------------------------------------------------------------------


def check_events(since: datetime, until: datetime, limit: int) -> list[ActivityEvent]:
    """Check status changes: the runs that changed a check's status."""
    # checkrun_latest_idx walks the window newest first; the status_changed filter keeps few.
    runs = (
        CheckRun.objects.filter(status_changed=True, created_at__gt=since, created_at__lte=until)
        .select_related("check_obj")
        .only("created_at", "status", "message", "check_obj__name")
        .order_by("-created_at", "-id")[:limit]
    )
    return [
        ActivityEvent(
            at=run.created_at,
            what=f"Check turned {CheckStatus(run.status).label.lower()}",
            subject=run.check_obj.name,
            url=reverse("check-detail", args=[run.check_obj_id]),
            status=run.status,
            detail=run.message[:200],
        )
        for run in runs
    ]


ALERT_EVENT_WORDS = {
    AlertEventKind.OPENED: "Alert opened",
    AlertEventKind.ACKNOWLEDGED: "Alert acknowledged",
    AlertEventKind.RESOLVED: "Alert resolved",
    AlertEventKind.REOPENED: "Alert reopened",
}


def alert_events(since: datetime, until: datetime, limit: int) -> list[ActivityEvent]:
    """Alerts opened, acknowledged, resolved and reopened, from their timelines."""
    # alertevent_latest_idx: the newest timeline entries overall.
    rows = (
        AlertEvent.objects.filter(
            kind__in=list(ALERT_EVENT_WORDS), created_at__gt=since, created_at__lte=until
        )
        .select_related("alert")
        .only("created_at", "kind", "actor", "alert__title", "alert__severity")
        .order_by("-created_at", "-id")[:limit]
    )
    events = []
    for row in rows:
        if row.kind == AlertEventKind.RESOLVED:
            status = CheckStatus.OK
        elif row.kind == AlertEventKind.ACKNOWLEDGED:
            status = "acknowledged"
        else:
            status = row.alert.severity
        events.append(
            ActivityEvent(
                at=row.created_at,
                what=ALERT_EVENT_WORDS[row.kind],
                subject=row.alert.title,
                url=reverse("alert-detail", args=[row.alert_id]),
                status=status,
                detail=f"by {row.actor}" if row.actor and row.actor != "system" else "",
            )
        )
    return events


def recent_events(
    now: datetime | None = None, window: timedelta = EVENT_WINDOW, limit: int = EVENT_LIMIT
) -> tuple[list[ActivityEvent], list[str]]:
    """The newest ``limit`` events of the last ``window`` from every source, newest first,
    and the sources that failed (named, so the page says what is missing)."""
    now = now or timezone.now()
    since = now - window
    sources = {"checks": check_events, **event_sources()}
    events: list[ActivityEvent] = []
    failed: list[str] = []
    for name, source in sorted(sources.items()):
        try:
            events.extend(source(since, now, limit))
        except Exception:  # noqa: BLE001 - one broken source must not hide the others
            log.exception("activity events of %s failed", name)
            failed.append(name)
    events.sort(key=lambda event: event.at, reverse=True)
    return events[:limit], failed


def parse_window(value: str | None, default: float = 30) -> float:
    """A window in seconds from ``30``, ``30s``, ``5m``…; raises ValueError with a reason."""
    if value is None or value == "":
        return default
    seconds = parse_duration(value.strip())
    if not 1 <= seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"must be between 1s and 7d, got {value!r}")
    return seconds
