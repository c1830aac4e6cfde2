"""Readings shared by /metrics, /api/status, ``metrics health`` and the health report.

Each reading is taken fresh (never cached here) and never raises: an unreachable dependency
is a value to report, not an error to propagate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min
from django.utils import timezone
from redis.exceptions import RedisError

from monitoring.models import SEVERITY_RANK, Alert, Check, CheckStatus
from opsconsole.redis_guard import redis_client


@dataclass
class RedisReading:
    configured: bool
    up: bool = False
    used_memory: int = 0
    maxmemory: int = 0
    latency_ms: float | None = None
    error: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def read_redis(timeout: float | None = None) -> RedisReading:
    """PING and INFO within ``REDIS_TIMEOUT``; during a known outage the breaker answers at
    once with the last error, so a status page never waits twice for a hanging Redis."""
    if not settings.REDIS_URL:
        return RedisReading(configured=False)
    client = redis_client(timeout=timeout)
    try:
        started = time.monotonic()
        client.ping()
        latency = (time.monotonic() - started) * 1000
        info = client.info()
        return RedisReading(
            configured=True,
            up=True,
            used_memory=int(info.get("used_memory", 0)),
            maxmemory=int(info.get("maxmemory", 0)),
            latency_ms=round(latency, 2),
            info=info,
        )
    except (RedisError, OSError) as exc:
        return RedisReading(configured=True, up=False, error=str(exc) or type(exc).__name__)
    finally:
        client.close()


@dataclass
class QueueReading:
    broker: str
    reachable: bool
    queued: int | None
    succeeded_last_hour: int
    failed_last_hour: int
    error: str = ""

    @property
    def error_rate_pct(self) -> float | None:
        total = self.succeeded_last_hour + self.failed_last_hour
        return round(self.failed_last_hour * 100 / total, 2) if total else None


def read_queue(now: datetime | None = None) -> QueueReading:
    """django-q2: tasks waiting in the broker and task outcomes of the last hour."""
    from django_q.models import Failure, Success

    now = now or timezone.now()
    since = now - timedelta(hours=1)
    broker_name = "redis" if settings.REDIS_URL else "orm"
    succeeded = Success.objects.filter(stopped__gte=since).count()
    failed = Failure.objects.filter(stopped__gte=since).count()
    queued: int | None = None
    error = ""
    try:
        queued = _queue_size()
    except Exception as exc:  # noqa: BLE001 - any broker failure means "unreachable"
        error = str(exc) or type(exc).__name__
    return QueueReading(broker_name, error == "", queued, succeeded, failed, error)


def _queue_size() -> int:
    if settings.REDIS_URL:
        from django_q.conf import Conf

        client = redis_client()
        try:
            return int(client.llen(f"django_q:{Conf.CLUSTER_NAME}:q"))
        finally:
            client.close()
    from django_q.models import OrmQ

    # Rows stay in OrmQ while a worker holds them, so this counts waiting plus running tasks.
    return OrmQ.objects.count()


@dataclass
class DatabaseReading:
    up: bool
    vendor: str
    latency_ms: float | None = None
    error: str = ""


def read_database() -> DatabaseReading:
    try:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return DatabaseReading(
            True, connection.vendor, round((time.monotonic() - started) * 1000, 2)
        )
    except Exception as exc:  # noqa: BLE001
        return DatabaseReading(
            False, connection.vendor, error=str(exc).strip() or type(exc).__name__
        )


@dataclass
class SchedulerReading:
    """How long ago any check last ran, against the shortest check interval."""

    enabled_checks: int
    last_run_at: datetime | None
    age_seconds: float | None
    interval_seconds: int | None
    stalled: bool

    @property
    def limit_seconds(self) -> float | None:
        return None if self.interval_seconds is None else 3 * self.interval_seconds


def read_scheduler(now: datetime | None = None) -> SchedulerReading:
    now = now or timezone.now()
    # Heartbeat checks are pushed by the jobs they watch, but runchecks still evaluates them,
    # so every enabled check counts.
    agg = Check.objects.filter(enabled=True).aggregate(
        n=Count("id"),
        last=Max("last_run_at"),
        interval=Min("interval_seconds"),
        first=Min("created_at"),
    )
    if not agg["n"]:
        return SchedulerReading(0, None, None, None, False)
    # A fresh installation gets three intervals from its first check's creation before it
    # counts as stalled.
    reference = agg["last"] or agg["first"]
    age = max(0.0, (now - reference).total_seconds())
    interval = int(agg["interval"])
    return SchedulerReading(agg["n"], agg["last"], round(age, 1), interval, age > 3 * interval)


# --- overall state ----------------------------------------------------------------------


@dataclass
class OverallState:
    status: str
    summary: str
    checks_by_status: dict[str, int] = field(default_factory=dict)
    open_alerts: int = 0


def overall_state() -> OverallState:
    """Worst of the enabled checks and the open alerts, in two aggregate queries."""
    counts = {
        row["status"]: row["n"]
        for row in Check.objects.filter(enabled=True).values("status").annotate(n=Count("id"))
    }
    status = CheckStatus.OK
    for name, n in counts.items():
        if n and SEVERITY_RANK.get(CheckStatus(name), 0) > SEVERITY_RANK[CheckStatus(status)]:
            status = name
    open_alerts = 0
    rows = Alert.objects.filter(status="open").values("severity").annotate(n=Count("id"))
    for row in rows:
        open_alerts += row["n"]
        severity = str(row["severity"]).lower()
        if severity in ("warning", "critical") and (
            SEVERITY_RANK[CheckStatus(severity)] > SEVERITY_RANK[CheckStatus(status)]
        ):
            status = severity
    failing = counts.get(CheckStatus.CRITICAL, 0) + counts.get(CheckStatus.WARNING, 0)
    if not counts:
        summary = "No checks configured"
        status = CheckStatus.UNKNOWN if not open_alerts else status
    elif status == CheckStatus.OK:
        summary = f"All {sum(counts.values())} checks OK"
    else:
        parts = []
        if counts.get(CheckStatus.CRITICAL):
            parts.append(f"{counts[CheckStatus.CRITICAL]} critical")
        if counts.get(CheckStatus.WARNING):
            parts.append(f"{counts[CheckStatus.WARNING]} warning")
        if counts.get(CheckStatus.UNKNOWN):
            parts.append(f"{counts[CheckStatus.UNKNOWN]} unknown")
        summary = ", ".join(parts) if failing or parts else "Attention needed"
    if open_alerts:
        summary += f" · {open_alerts} open alert{'s' if open_alerts != 1 else ''}"
    return OverallState(str(status), summary, counts, open_alerts)
