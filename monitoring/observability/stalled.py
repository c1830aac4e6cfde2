"""The console watching itself: a CRITICAL "monitoring stalled" alert when checks stop running.

Nothing runs when the scheduler is down, so the alert is raised by the next process that
notices: an /api/status request, ``escalate`` or ``runchecks`` (which calls
``check_monitoring_stalled`` before it runs the due checks, while the gap is still visible).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring.alerts.lifecycle import raise_alert, resolve_alert
from monitoring.models import ACTIVE_STATUSES, Alert, AlertSeverity
from monitoring.observability.readings import SchedulerReading, read_scheduler
from opsconsole.env import format_duration

logger = logging.getLogger("opsconsole.monitoring_stalled")

DEDUP_KEY = "monitoring-stalled"
TITLE = "Monitoring stalled: checks have not run"


def describe(reading: SchedulerReading) -> str:
    age = format_duration(reading.age_seconds or 0)
    limit = format_duration(reading.limit_seconds or 0)
    last = reading.last_run_at.isoformat() if reading.last_run_at else "never"
    return (
        f"No scheduled check has run for {age} (limit {limit}, two times the shortest "
        "interval; heartbeat pings do not count); "
        f"last run: {last}. Start the worker (manage.py qcluster) and run "
        "manage.py setup_schedules, or run manage.py runchecks from cron."
    )


def raise_monitoring_stalled(reading: SchedulerReading, now: datetime | None = None) -> str:
    """Opens (or keeps) the CRITICAL alert; returns "opened", "open" or "logged"."""
    now = now or timezone.now()
    message = describe(reading)
    try:
        return _open_alert(message, now)
    except Exception:  # noqa: BLE001 - the caller (a status page) must keep answering
        logger.critical(
            "monitoring stalled, and the alert could not be stored: %s", message, exc_info=True
        )
        return "logged"


def _open_alert(message: str, now: datetime) -> str:
    if Alert.objects.filter(dedup_key=DEDUP_KEY, status__in=ACTIVE_STATUSES).exists():
        return "open"
    try:
        with transaction.atomic():
            # The alert engine's entry point: escalation and the timeline follow.
            raise_alert(
                DEDUP_KEY,
                AlertSeverity.CRITICAL,
                TITLE,
                message=message,
                component="opsconsole",
                now=now,
            )
    except IntegrityError:
        return "open"  # another process opened it a moment ago (one active alert per key)
    logger.critical("monitoring stalled: %s", message)
    return "opened"


def resolve_monitoring_stalled(now: datetime | None = None) -> int:
    """Resolves an open stalled alert once checks run again; returns how many were resolved."""
    try:
        active = list(Alert.objects.filter(dedup_key=DEDUP_KEY, status__in=ACTIVE_STATUSES))
        for alert in active:
            resolve_alert(alert, "Checks are running again", now)
        return len(active)
    except Exception:  # noqa: BLE001 - the caller (a status page) must keep answering
        logger.warning("could not resolve the monitoring-stalled alert", exc_info=True)
        return 0


def check_monitoring_stalled(now: datetime | None = None) -> SchedulerReading:
    """Reads the scheduler state and raises or resolves the alert; for runchecks and escalate."""
    now = now or timezone.now()
    reading = read_scheduler(now)
    if reading.stalled:
        raise_monitoring_stalled(reading, now)
    elif reading.enabled_checks:
        resolve_monitoring_stalled(now)
    return reading
