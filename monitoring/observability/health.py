"""``metrics health``: the seed's health table applied to live readings, each finding with
what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from monitoring.models import Check, CheckStatus
from monitoring.observability.readings import read_queue, read_redis, read_scheduler
from monitoring.observability.stalled import describe

OK, WARNING, CRITICAL = "ok", "warning", "critical"
LEVEL_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}


@dataclass
class Finding:
    level: str
    name: str
    value: str
    message: str
    action: str = ""


def _graded(value: float, warn_at: float, crit_above: float) -> str:
    """Seed table: healthy below ``warn_at``, warning up to ``crit_above``, critical above."""
    if value > crit_above:
        return CRITICAL
    if value >= warn_at:
        return WARNING
    return OK


def findings(now: datetime | None = None) -> list[Finding]:
    now = now or timezone.now()
    result: list[Finding] = []
    queue = read_queue(now)

    level = _graded(queue.failed_last_hour, 1, 5)
    result.append(
        Finding(
            level,
            "Queue failed jobs",
            f"{queue.failed_last_hour} in the last hour",
            "no failed jobs" if level == OK else "jobs failed in the last hour",
            ""
            if level == OK
            else "Read the failures in the admin (Django Q > Failed tasks) or the worker's "
            "ERROR log lines (they carry job_id and the traceback); fix the cause, then resubmit.",
        )
    )

    rate = queue.error_rate_pct
    if rate is None:
        result.append(Finding(OK, "Job error rate", "no jobs in the last hour", "nothing to rate"))
    else:
        level = CRITICAL if rate > 10 else WARNING if rate >= 5 else OK
        result.append(
            Finding(
                level,
                "Job error rate",
                f"{rate:g} %",
                "below 5 %" if level == OK else "too many jobs are failing",
                ""
                if level == OK
                else "Look for a common error among the failed tasks; a bad deploy or an "
                "unreachable dependency is the usual cause.",
            )
        )

    if queue.queued is None:
        result.append(
            Finding(
                CRITICAL,
                "Queue backlog",
                "unknown",
                f"the {queue.broker} broker is unreachable: {queue.error}",
                "Check REDIS_URL and that Redis is running (redis-cli ping).",
            )
        )
    else:
        level = _graded(queue.queued, 10, 50)
        result.append(
            Finding(
                level,
                "Queue backlog",
                f"{queue.queued} tasks",
                "below 10" if level == OK else "tasks are waiting for a worker",
                ""
                if level == OK
                else "Check that a worker runs (manage.py qcluster) and is not stuck; "
                "add workers (Q_WORKERS) if it keeps up only slowly.",
            )
        )

    redis = read_redis()
    if not redis.configured:
        result.append(
            Finding(
                OK,
                "Redis connection",
                "not configured",
                "REDIS_URL is empty: local-memory cache, ORM broker",
            )
        )
    elif redis.up:
        result.append(Finding(OK, "Redis connection", "connected", f"PING {redis.latency_ms} ms"))
    else:
        result.append(
            Finding(
                CRITICAL,
                "Redis connection",
                "disconnected",
                redis.error,
                "Start Redis or fix REDIS_URL; the cache degrades to misses meanwhile, "
                "but the queue stops.",
            )
        )

    enabled = Check.objects.filter(enabled=True)
    total = enabled.count()
    if total == 0:
        result.append(
            Finding(
                WARNING,
                "Checks",
                "0 enabled",
                "nothing is being monitored",
                "Load checks: manage.py loadchecks checks.yaml (see docs/checkfile.md).",
            )
        )
    else:
        critical = list(
            enabled.filter(status=CheckStatus.CRITICAL).values_list("name", flat=True)[:10]
        )
        warning = list(
            enabled.filter(status=CheckStatus.WARNING).values_list("name", flat=True)[:10]
        )
        if critical:
            result.append(
                Finding(
                    CRITICAL,
                    "Checks",
                    f"{len(critical)} critical of {total}",
                    "critical: " + ", ".join(critical),
                    "Open the alerts page and follow each alert's next steps.",
                )
            )
        elif warning:
            result.append(
                Finding(
                    WARNING,
                    "Checks",
                    f"{len(warning)} warning of {total}",
                    "warning: " + ", ".join(warning),
                    "Investigate within the hour (see each check's page).",
                )
            )
        else:
            result.append(Finding(OK, "Checks", f"{total} enabled", "none failing"))

    scheduler = read_scheduler(now)
    if scheduler.stalled:
        result.append(
            Finding(
                CRITICAL,
                "Scheduler",
                f"last run {scheduler.age_seconds:.0f}s ago",
                "checks have stopped running",
                describe(scheduler),
            )
        )
    elif scheduler.enabled_checks:
        result.append(
            Finding(
                OK, "Scheduler", f"last run {scheduler.age_seconds:.0f}s ago", "checks are running"
            )
        )
    return result


def overall(items: list[Finding]) -> str:
    return max((f.level for f in items), key=LEVEL_RANK.__getitem__, default=OK)
