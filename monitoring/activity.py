"""Sources of the delta view: what changed in a time window.

A source is ``fn(since, until) -> dict`` returning one section of the view, e.g.
``{"added": 3, "processed": 10, "failed": 0}``; apps register theirs in ``AppConfig.ready``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

ActivitySource = Callable[[datetime, datetime], dict[str, Any]]

_sources: dict[str, ActivitySource] = {}


def register_activity_source(section: str, source: ActivitySource) -> None:
    _sources[section] = source


def activity_sources() -> dict[str, ActivitySource]:
    return dict(_sources)


def _check_runs(since: datetime, until: datetime) -> dict[str, int]:
    from django.db.models import Count

    from monitoring.models import CheckRun, CheckStatus

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
    from monitoring.models import Check

    unit = ""
    try:
        from monitoring.kinds import get_kind

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
    import logging
    from datetime import timedelta

    from django.utils import timezone

    now = now or timezone.now()
    since = now - timedelta(seconds=window_seconds)
    sections: dict[str, Any] = {"checks": _check_runs(since, now)}
    for name, source in sorted(activity_sources().items()):
        try:
            sections[name] = source(since, now)
        except Exception as exc:  # noqa: BLE001
            logging.getLogger(__name__).exception("activity section %s failed", name)
            sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "window_seconds": window_seconds,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "sections": sections,
        "freshness": _freshness(now),
    }
