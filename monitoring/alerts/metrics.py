"""Metric collectors and the activity source of the alerts area, computed from the database."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from monitoring.models import ACTIVE_STATUSES, Alert, AlertSeverity, NotificationChannel
from monitoring.models.alerts import ACK_WAIT_BUCKETS, ACK_WAIT_HISTOGRAM
from opsconsole.counters import count_events, read_counters, read_histogram

# Counted by ``count_notifications`` as the escalation pass records each delivery's end.
NOTIFICATIONS = "opsconsole_notifications_total"


def count_notifications(outcomes: dict[tuple[str, str], int]) -> None:
    """``{(channel name, "sent" | "failed"): rows}``, in the transaction that records them."""
    count_events(
        (NOTIFICATIONS, {"channel": channel, "outcome": outcome}, n)
        for (channel, outcome), n in sorted(outcomes.items())
    )


def alert_metrics(now: datetime) -> Iterable[Any]:
    open_alerts = GaugeMetricFamily(
        "opsconsole_alerts_open",
        "Active (open or acknowledged) alerts",
        labels=["severity", "status"],
    )
    counts = {
        (row["severity"], row["status"]): row["n"]
        for row in Alert.objects.filter(status__in=ACTIVE_STATUSES)
        .values("severity", "status")
        .annotate(n=Count("id"))
        .order_by()
    }
    for severity in AlertSeverity.values:
        for status in ACTIVE_STATUSES:
            open_alerts.add_metric([severity, str(status)], counts.get((severity, status), 0))
    yield open_alerts

    sent = CounterMetricFamily(
        NOTIFICATIONS.removesuffix("_total"),
        "Notifications delivered (sent) or given up (failed), by channel; counted as each "
        "delivery ends, so deleting old alerts never lowers it",
        labels=["channel", "outcome"],
    )
    counted = {
        (series.labels["channel"], series.labels["outcome"]): series.value
        for series in read_counters(NOTIFICATIONS)[NOTIFICATIONS]
    }
    # Every channel's series from its creation on, at 0 until its first delivery, so that
    # increase() sees the first one; a deleted channel's counts stay.
    channels = set(NotificationChannel.objects.values_list("name", flat=True))
    channels |= {channel for channel, _ in counted}
    for channel in sorted(channels):
        for outcome in ("sent", "failed"):
            sent.add_metric([channel, outcome], counted.get((channel, outcome), 0))
    yield sent

    buckets, total_wait, _ = read_histogram(ACK_WAIT_HISTOGRAM, ACK_WAIT_BUCKETS)
    yield HistogramMetricFamily(
        ACK_WAIT_HISTOGRAM,
        "Time from an alert opening to its acknowledgement, observed at each acknowledgement",
        buckets=[(f"{float(le):g}" if le != "+Inf" else le, n) for le, n in buckets],
        sum_value=total_wait,
    )


def alert_activity(since: datetime, until: datetime) -> dict[str, Any]:
    return {
        "opened": Alert.objects.filter(opened_at__gte=since, opened_at__lt=until).count(),
        "resolved": Alert.objects.filter(resolved_at__gte=since, resolved_at__lt=until).count(),
    }
