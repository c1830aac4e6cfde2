"""Prometheus alerting rules for the metrics /metrics exports (``manage.py prometheus_rules``).

``docs/prometheus-rules.test.yaml`` holds ``promtool test rules`` cases for this output (as
``opsconsole-rules.yml``); tests/test_metrics_monotonic.py runs them. A changed expression or
annotation changes the cases too.
"""

from __future__ import annotations

from typing import Any

# Every family a rule may reference, and which area exports it.
EXPORTED_METRICS = {
    "opsconsole_check_status": "monitoring",
    "opsconsole_check_value": "monitoring",
    "opsconsole_check_last_run_timestamp_seconds": "monitoring",
    "opsconsole_checks_last_run_age_seconds": "monitoring",
    "opsconsole_monitoring_stalled": "monitoring",
    "opsconsole_queue_tasks": "monitoring",
    "opsconsole_queue_clusters_alive": "monitoring",
    "opsconsole_queue_oldest_queued_seconds": "monitoring",
    "opsconsole_overall_status": "monitoring",
    "opsconsole_redis_up": "monitoring",
    "opsconsole_redis_memory_used_bytes": "monitoring",
    "opsconsole_alerts_open": "alerts",
    "opsconsole_notifications_total": "alerts",
    "opsconsole_alert_time_to_acknowledge_seconds": "alerts",
    "opsconsole_backlog_entries": "backlog",
    "batch_operations": "batches",
    "batch_operations_created_total": "batches",
    "batch_operations_total": "batches",
    "batch_processing_duration_seconds": "batches",
    "batch_pending_operations": "batches",
    "batch_failures_total": "batches",
}


def _rule(
    name: str, expr: str, duration: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def rules() -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": "batch_operations",
                "rules": [
                    _rule(
                        "HighBatchFailureRate",
                        "rate(batch_failures_total[5m]) > 0.1",
                        "5m",
                        "warning",
                        "High batch operation failure rate",
                        "More than one batch failure every 10 seconds over 5 minutes. "
                        "Check GET /api/batches/health/ and the failed items' errors.",
                    ),
                    _rule(
                        "SlowBatchProcessing",
                        "histogram_quantile(0.95, sum by (le) "
                        "(rate(batch_processing_duration_seconds_bucket[10m]))) > 60",
                        "10m",
                        "warning",
                        "Batch processing slower than 60 seconds",
                        "The 95th percentile batch duration is over 60 s. "
                        "Check the target service and the worker count.",
                    ),
                    _rule(
                        "LargePendingQueue",
                        "batch_pending_operations > 500",
                        "5m",
                        "warning",
                        "Large pending batch operation queue",
                        "More than 500 batches wait. Check that workers run (manage.py qcluster).",
                    ),
                ],
            },
            {
                "name": "opsconsole",
                "rules": [
                    _rule(
                        "CheckCritical",
                        "opsconsole_check_status == 2",
                        "5m",
                        "critical",
                        "Check {{ $labels.check }} is critical",
                        "Component {{ $labels.component }}: open the check's page in the console.",
                    ),
                    _rule(
                        "MonitoringStalled",
                        "opsconsole_monitoring_stalled == 1 "
                        "or absent(opsconsole_monitoring_stalled)",
                        "5m",
                        "critical",
                        "Ops Console checks have stopped running",
                        "No scheduled check ran for two intervals, or /metrics is not scraped. "
                        "Start the worker "
                        "(manage.py qcluster) or the runchecks cron job.",
                    ),
                    _rule(
                        "AlertUnacknowledged",
                        'opsconsole_alerts_open{severity="critical",status="open"} > 0',
                        "30m",
                        "critical",
                        "A critical alert has been unacknowledged for 30 minutes",
                        "Acknowledge it on the alerts page or it keeps escalating.",
                    ),
                    _rule(
                        "RedisDown",
                        "opsconsole_redis_up == 0",
                        "2m",
                        "critical",
                        "Redis is unreachable",
                        "The cache degrades to misses, but the task queue stops. "
                        "Start Redis or fix REDIS_URL.",
                    ),
                    _rule(
                        "TaskQueueBacklog",
                        'opsconsole_queue_tasks{state="queued"} > 50',
                        "10m",
                        "warning",
                        "More than 50 tasks wait in the queue",
                        "Workers are missing or stuck: check manage.py qcluster.",
                    ),
                ],
            },
        ]
    }
