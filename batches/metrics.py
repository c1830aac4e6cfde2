"""What batches report: the delta view's section and the /metrics collector, computed from
the database so that any process sees what every worker did."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from batches import events
from batches.models import FINAL_STATUSES, BatchItem, BatchOperation, BatchStatus, ItemStatus
from batches.operations import operation_names
from opsconsole.counters import read_counters, read_histogram


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
    """Gauges of the batches as they are now, and counters of what happened to them.

    The ``_total`` counters and the duration histogram come from ``EventCounter`` rows written
    when each event happened (``batches.events``), never from the current rows: a retry turns
    failed items back to pending and housekeeping deletes old batches, and neither may lower a
    counter."""
    operations = sorted(set(operation_names()))
    state = GaugeMetricFamily(
        "batch_operations",
        "Batch operations now, by operation type and status",
        labels=["operation_type", "status"],
    )
    counts: dict[tuple[str, str], int] = {}
    for operation, status, n in (
        BatchOperation.objects.values_list("operation", "status").annotate(n=Count("id")).order_by()
    ):
        counts[(operation, status)] = n
    # Every status of every known operation, zeros included: a series that vanishes when its
    # last batch changes status reads as "no data" rather than 0.
    for operation in sorted(set(operations) | {op for op, _ in counts}):
        for status in BatchStatus.values:
            state.add_metric([operation, status], counts.get((operation, status), 0))
    yield state
    yield GaugeMetricFamily(
        "batch_pending_operations",
        "Batch operations waiting for a worker",
        value=sum(n for (_, status), n in counts.items() if status == BatchStatus.PENDING),
    )

    stored = read_counters(events.CREATED, events.FINISHED, events.ITEM_FAILURES)
    created = CounterMetricFamily(
        events.CREATED.removesuffix("_total"),
        "Batch operations created, by operation type",
        labels=["operation_type"],
    )
    created_by_op = {s.labels["operation_type"]: s.value for s in stored[events.CREATED]}
    for operation in sorted(set(operations) | set(created_by_op)):
        created.add_metric([operation], created_by_op.get(operation, 0))
    yield created

    finished = CounterMetricFamily(
        events.FINISHED.removesuffix("_total"),
        "Batch operations that reached a final status, by operation type and status "
        "(a retried batch counts each time it finishes)",
        labels=["operation_type", "status"],
    )
    finished_by = {
        (s.labels["operation_type"], s.labels["status"]): s.value for s in stored[events.FINISHED]
    }
    for operation in sorted(set(operations) | {op for op, _ in finished_by}):
        for status in FINAL_STATUSES:
            finished.add_metric([operation, status], finished_by.get((operation, status), 0))
    yield finished

    failures = CounterMetricFamily(
        events.ITEM_FAILURES.removesuffix("_total"),
        "Batch items that failed, by operation type (an item that fails again after a retry "
        "counts again)",
        labels=["operation_type"],
    )
    failed_by_op = {s.labels["operation_type"]: s.value for s in stored[events.ITEM_FAILURES]}
    for operation in sorted(set(operations) | set(failed_by_op)):
        failures.add_metric([operation], failed_by_op.get(operation, 0))
    yield failures

    buckets, total_seconds, _ = read_histogram(events.DURATION, events.DURATION_BUCKETS)
    yield HistogramMetricFamily(
        events.DURATION,
        "Time from a batch's start to its end, observed as each batch finishes",
        buckets=buckets,
        sum_value=total_seconds,
    )
