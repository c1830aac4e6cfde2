"""Metric collectors and the activity source of the alerts area, computed from the database."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from monitoring.models import (
    ACTIVE_STATUSES,
    Alert,
    AlertSeverity,
    Notification,
    NotificationStatus,
)

# Seconds: a minute, five, fifteen, thirty, an hour, four hours, a day.
ACK_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0)


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
        "opsconsole_notifications",
        "Notifications by channel and outcome",
        labels=["channel", "outcome"],
    )
    for row in (
        Notification.objects.filter(
            status__in=[
                NotificationStatus.SENT,
                NotificationStatus.FAILED,
                NotificationStatus.CANCELLED,
            ]
        )
        .values("channel__name", "status")
        .annotate(n=Count("id"))
        .order_by("channel__name", "status")
    ):
        sent.add_metric([row["channel__name"], row["status"]], row["n"])
    yield sent

    wait = ExpressionWrapper(F("acknowledged_at") - F("opened_at"), output_field=DurationField())
    acked = Alert.objects.filter(acknowledged_at__isnull=False).annotate(wait=wait)
    from datetime import timedelta

    aggregates = {
        f"le{i}": Count("id", filter=Q(wait__lte=timedelta(seconds=b)))
        for i, b in enumerate(ACK_BUCKETS)
    }
    figures = acked.aggregate(total=Count("id"), total_wait=Sum("wait"), **aggregates)
    buckets = [(f"{b:g}", figures[f"le{i}"] or 0) for i, b in enumerate(ACK_BUCKETS)]
    buckets.append(("+Inf", figures["total"] or 0))
    total_wait = figures["total_wait"]
    histogram = HistogramMetricFamily(
        "opsconsole_alert_time_to_acknowledge_seconds",
        "Time from an alert opening to its acknowledgement",
        buckets=buckets,
        sum_value=total_wait.total_seconds() if total_wait else 0.0,
    )
    yield histogram


def alert_activity(since: datetime, until: datetime) -> dict[str, Any]:
    return {
        "opened": Alert.objects.filter(opened_at__gte=since, opened_at__lt=until).count(),
        "resolved": Alert.objects.filter(resolved_at__gte=since, resolved_at__lt=until).count(),
    }
