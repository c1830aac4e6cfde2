"""``metrics health``: the seed's health table applied to live readings, each finding with
what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from monitoring.alerts.policy import unnotified_alerts
from monitoring.kinds.queue import QUEUE_DEFAULTS, QueueKind, grade
from monitoring.models import Check, CheckStatus
from monitoring.observability.readings import (
    QueueReading,
    overall_state,
    read_queue,
    read_redis,
    read_scheduler,
)
from monitoring.observability.stalled import describe

# A finding is graded like a check.
OK, WARNING, CRITICAL = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.CRITICAL
LEVEL_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}


@dataclass
class Finding:
    level: str
    name: str
    value: str
    message: str
    action: str = ""


def findings(now: datetime | None = None) -> list[Finding]:
    now = now or timezone.now()
    result: list[Finding] = []
    queue = read_queue(now)
    # The queue check's own defaults are the limits, so this table and the check agree.
    limits = QUEUE_DEFAULTS

    level = grade(queue.failed_last_hour, limits["failures_warn"], limits["failures_crit"])
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
        # The seed's table rates every hour with a failure, however few jobs ran; the check
        # waits for rate_min_tasks so that one failure in three is not a critical alert.
        level = grade(rate, limits["error_rate_warn"], limits["error_rate_crit"])
        result.append(
            Finding(
                level,
                "Job error rate",
                f"{rate:g} %",
                f"at most {limits['error_rate_warn']:g} %"
                if level == OK
                else "too many jobs are failing",
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
        level = grade(queue.queued, QueueKind.default_warn, QueueKind.default_crit)
        result.append(
            Finding(
                level,
                "Queue backlog",
                f"{queue.queued} tasks",
                f"at most {QueueKind.default_warn}"
                if level == OK
                else "tasks are waiting for a worker",
                ""
                if level == OK
                else "Check that a worker runs (manage.py qcluster) and is not stuck; "
                "add workers (Q_WORKERS) if it keeps up only slowly.",
            )
        )
        result.append(_clusters_finding(queue, int(limits["min_clusters"] or 0)))

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

    result.append(_checks_finding())
    result.append(_nobody_notified_finding())

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


def _clusters_finding(queue: QueueReading, expected: int) -> Finding:
    alive = queue.clusters_alive or 0
    value = f"{alive} alive"
    if alive >= expected:
        return Finding(OK, "Queue clusters", value, "a cluster is taking tasks")
    action = "Start a worker: manage.py qcluster (see docs/deployment.md)."
    if queue.queued:
        return Finding(WARNING, "Queue clusters", value, "tasks wait and no cluster runs", action)
    # Without work waiting the seed's table stays healthy; the queue check still goes
    # critical, as a queue nobody serves stalls with its first task.
    return Finding(OK, "Queue clusters", value, "none alive, nothing waiting", action)


def _nobody_notified_finding() -> Finding:
    """Alerts that were due and that no channel took: pages nobody received."""
    count = unnotified_alerts()
    if not count:
        return Finding(OK, "Nobody notified", "0 alerts", "every due alert reached a channel")
    return Finding(
        CRITICAL,
        "Nobody notified",
        f"{count} alert{'s' if count != 1 else ''}",
        "alerts were due and no channel accepts them: nobody was notified",
        "Add a notification channel that accepts these severities (admin: Notification "
        "channels, or the check file's channels:) or lower a channel's minimum severity; "
        "then use its 'send test notification' action.",
    )


def _checks_finding() -> Finding:
    """The checks' line: the overall state shown by the dashboard and /api/status."""
    state = overall_state()
    total = sum(state.checks_by_status.values())
    level = {CheckStatus.CRITICAL: CRITICAL, CheckStatus.WARNING: WARNING}.get(state.status, OK)
    if total == 0:
        return Finding(
            CRITICAL if level == CRITICAL else WARNING,
            "Checks",
            "0 enabled",
            "nothing is being monitored",
            "Load checks: manage.py loadchecks checks.yaml (see docs/checkfile.md).",
        )
    if level == OK:
        return Finding(OK, "Checks", state.summary, "none failing")
    enabled = Check.objects.filter(enabled=True)
    parts = []
    for status in (CheckStatus.CRITICAL, CheckStatus.WARNING):
        names = list(enabled.filter(status=status).values_list("name", flat=True)[:10])
        if names:
            parts.append(f"{status}: " + ", ".join(names))
    return Finding(
        level,
        "Checks",
        state.summary,
        "; ".join(parts) or "open alerts",
        "Open the alerts page and follow each alert's next steps."
        if level == CRITICAL
        else "Investigate within the hour (see each check's page).",
    )


def overall(items: list[Finding]) -> str:
    return max((f.level for f in items), key=LEVEL_RANK.__getitem__, default=OK)
