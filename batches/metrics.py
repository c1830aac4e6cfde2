"""What batches report: the delta view's section and the /metrics collector, computed from
the database so that any process sees what every worker did."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from batches.models import BatchItem, BatchOperation, BatchStatus, ItemStatus

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120)


def activity(since: datetime, until: datetime) -> dict[str, int]:
    """Items that reached a final state (succeeded or failed) in the window, and batches."""
    items = BatchItem.objects.filter(finished_at__gte=since, finished_at__lt=until).aggregate(
        finished=Count("id"), failed=Count("id", filter=Q(status=ItemStatus.FAILED))
    )
    batches = BatchOperation.objects.filter(finished_at__gte=since, finished_at__lt=until).count()
    return {
        "items_finished": items["finished"],
        "items_failed": items["failed"],
        "batches_finished": batches,
    }


def collect_metrics(now: datetime) -> Iterable[Any]:
    totals = CounterMetricFamily(
        "batch_operations_total",
        "Batch operations by operation and current status",
        labels=["operation", "status"],
    )
    failures = CounterMetricFamily(
        "batch_failures_total", "Batch items that failed, by operation", labels=["operation"]
    )
    rows = (
        BatchOperation.objects.values("operation", "status")
        .annotate(n=Count("id"), failed=Sum("failed_items"))
        .order_by()
    )
    failed_by_op: dict[str, int] = {}
    pending = 0
    for row in rows:
        totals.add_metric([row["operation"], row["status"]], row["n"])
        failed_by_op[row["operation"]] = failed_by_op.get(row["operation"], 0) + (
            row["failed"] or 0
        )
        if row["status"] == BatchStatus.PENDING:
            pending += row["n"]
    for operation, failed in sorted(failed_by_op.items()):
        failures.add_metric([operation], failed)
    yield totals
    yield failures

    yield GaugeMetricFamily(
        "batch_pending_operations", "Batch operations waiting for a worker", value=pending
    )

    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    finished = BatchOperation.objects.filter(finished_at__isnull=False, started_at__isnull=False)
    aggregates: dict[str, Any] = {
        f"le_{bound}": Count(
            "id", filter=Q(finished_at__lte=F("started_at") + timedelta(seconds=bound))
        )
        for bound in DURATION_BUCKETS
    }
    agg = finished.aggregate(total=Count("id"), seconds=Sum(took), **aggregates)
    buckets = [(str(float(bound)), agg[f"le_{bound}"]) for bound in DURATION_BUCKETS]
    buckets.append(("+Inf", agg["total"]))
    total_seconds = agg["seconds"].total_seconds() if agg["seconds"] is not None else 0.0
    yield HistogramMetricFamily(
        "batch_processing_duration_seconds",
        "Time from a batch's start to its end",
        buckets=buckets,
        sum_value=total_seconds,
    )
