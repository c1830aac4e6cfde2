"""The monitoring collector: checks, the job queue and Redis, read from their sources.

Alert, backlog and batch families are registered by their own areas in
``opsconsole.registries``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from monitoring.models import Check, CheckStatus
from monitoring.models.checks import RUN_LAG_BUCKETS, RUN_LAG_HISTOGRAM
from monitoring.observability.readings import (
    overall_state,
    read_queue,
    read_redis,
    read_scheduler,
)
from opsconsole.counters import read_histogram

# opsconsole_check_status values; paused checks report as unknown (they are not measured).
STATUS_VALUES = {
    CheckStatus.OK: 0,
    CheckStatus.WARNING: 1,
    CheckStatus.CRITICAL: 2,
    CheckStatus.UNKNOWN: 3,
    CheckStatus.PAUSED: 3,
}


def check_metrics(now: datetime) -> Iterable[Any]:
    status = GaugeMetricFamily(
        "opsconsole_check_status",
        "Current check status: 0 ok, 1 warning, 2 critical, 3 unknown or paused",
        labels=["check", "component"],
    )
    value = GaugeMetricFamily(
        "opsconsole_check_value", "Latest measured value of the check", labels=["check"]
    )
    last_run = GaugeMetricFamily(
        "opsconsole_check_last_run_timestamp_seconds",
        "When the check last ran (Unix time)",
        labels=["check"],
    )
    rows = Check.objects.filter(enabled=True).values_list(
        "name", "component", "status", "last_value", "last_run_at"
    )
    for name, component, check_status, last_value, last_run_at in rows.iterator(chunk_size=2000):
        status.add_metric([name, component], STATUS_VALUES.get(check_status, 3))
        if last_value is not None:
            value.add_metric([name], last_value)
        if last_run_at is not None:
            last_run.add_metric([name], last_run_at.timestamp())
    yield status
    yield value
    yield last_run

    scheduler = read_scheduler(now)
    age = GaugeMetricFamily(
        "opsconsole_checks_last_run_age_seconds", "Seconds since any check last ran"
    )
    if scheduler.age_seconds is not None:
        age.add_metric([], scheduler.age_seconds)
    yield age
    yield GaugeMetricFamily(
        "opsconsole_monitoring_stalled",
        "1 when no check has run for three check intervals",
        value=1 if scheduler.stalled else 0,
    )
    buckets, total_lag, _ = read_histogram(RUN_LAG_HISTOGRAM, RUN_LAG_BUCKETS)
    yield HistogramMetricFamily(
        RUN_LAG_HISTOGRAM,
        "Seconds from a check's due time (its slot) to its run being stored, observed as "
        "runners record each scheduled run",
        buckets=[(f"{float(le):g}" if le != "+Inf" else le, n) for le, n in buckets],
        sum_value=total_lag,
    )
    yield GaugeMetricFamily(
        "opsconsole_overall_status",
        "Overall state, the worst of the enabled checks and the open alerts: "
        "0 ok, 1 warning, 2 critical, 3 unknown",
        value=STATUS_VALUES.get(overall_state().status, 3),
    )


def queue_metrics(now: datetime) -> Iterable[Any]:
    reading = read_queue(now)
    family = GaugeMetricFamily(
        "opsconsole_queue_tasks",
        "django-q2 tasks: queued (waiting), in flight (held by a worker), "
        "succeeded and failed in the last hour",
        labels=["state"],
    )
    if reading.queued is not None:
        family.add_metric(["queued"], reading.queued)
    if reading.in_flight is not None:
        family.add_metric(["in_flight"], reading.in_flight)
    family.add_metric(["succeeded_last_hour"], reading.succeeded_last_hour)
    family.add_metric(["failed_last_hour"], reading.failed_last_hour)
    yield family
    # Absent (not 0) while the broker is unreachable: nobody can tell then.
    clusters = GaugeMetricFamily(
        "opsconsole_queue_clusters_alive", "django-q2 clusters (qcluster processes) alive"
    )
    if reading.clusters_alive is not None:
        clusters.add_metric([], reading.clusters_alive)
    yield clusters
    oldest = GaugeMetricFamily(
        "opsconsole_queue_oldest_queued_seconds", "Age of the oldest task waiting in the queue"
    )
    if reading.oldest_queued_seconds is not None:
        oldest.add_metric([], reading.oldest_queued_seconds)
    yield oldest


def redis_metrics(now: datetime) -> Iterable[Any]:
    reading = read_redis()
    if not reading.configured:
        return  # no REDIS_URL: nothing to report, and "down" would be a false alarm
    yield GaugeMetricFamily(
        "opsconsole_redis_up", "1 when Redis answers PING", value=1 if reading.up else 0
    )
    memory = GaugeMetricFamily("opsconsole_redis_memory_used_bytes", "Redis used_memory")
    if reading.up:
        memory.add_metric([], reading.used_memory)
    yield memory
