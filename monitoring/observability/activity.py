"""The delta view: what changed in a time window (``delta``, ``/activity/``, ``/api/activity/``).

Each section comes from an activity source, ``fn(since, until) -> dict`` such as
``{"added": 3, "processed": 10, "failed": 0}``, registered by the app that owns the data
(``opsconsole.registries``); check runs and freshness are this app's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitoring.kinds import get_kind
from monitoring.models import Check, CheckRun, CheckStatus
from opsconsole.env import parse_duration
from opsconsole.registries import activity_sources

MAX_WINDOW_SECONDS = 7 * 86400


def _check_runs(since: datetime, until: datetime) -> dict[str, int]:
    from django.db.models import Count

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


def parse_window(value: str | None, default: float = 30) -> float:
    """A window in seconds from ``30``, ``30s``, ``5m``…; raises ValueError with a reason."""
    if value is None or value == "":
        return default
    seconds = parse_duration(value.strip())
    if not 1 <= seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"must be between 1s and 7d, got {value!r}")
    return seconds
