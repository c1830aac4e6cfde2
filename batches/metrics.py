"""What batches report: the delta view's section and the /metrics collector, computed from
the database so that any process sees what every worker did."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psutil
from django.conf import settings
from django.db import connections, router
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
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


# --- GET /api/batches/health ------------------------------------------------------------------

# A batch pending this long without a worker, more pending batches than this, or more than this
# share of failed items in the window: the endpoint says "degraded".
STUCK_PENDING_AFTER = timedelta(minutes=10)
PENDING_QUEUE_LIMIT = 500
FAILURE_RATE_LIMIT = 0.1
RATE_WINDOW = timedelta(hours=24)


def storage_sizes() -> dict[str, Any]:
    """Bytes the batches tables take, data and indexes apart, on the database batches are read
    from. PostgreSQL: ``pg_total_relation_size`` (data, TOAST and indexes) less
    ``pg_indexes_size``, per table. SQLite: the pages of each table and of its indexes from the
    ``dbstat`` table; where SQLite is built without it, the whole database file
    (``page_count`` × ``page_size``) stands for the data and the indexes are not known."""
    tables = [BatchOperation._meta.db_table, BatchItem._meta.db_table]
    connection = connections[router.db_for_read(BatchOperation)]
    per_table: dict[str, int] = {}
    data = indexes = 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in tables:
                cursor.execute(
                    "SELECT pg_total_relation_size(%s::regclass), pg_indexes_size(%s::regclass)",
                    [table, table],
                )
                total, index_bytes = (int(v) for v in cursor.fetchone())
                per_table[table] = total
                data += total - index_bytes
                indexes += index_bytes
            return {
                "data": data,
                "indexes": indexes,
                "tables": per_table,
                "source": "pg_total_relation_size - pg_indexes_size, pg_indexes_size",
            }
        if connection.vendor != "sqlite":
            return {"data": None, "indexes": None, "tables": {}, "source": "not measured"}
        cursor.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND tbl_name IN (%s, %s)",
            tables,
        )
        owner = {name: table for name, table in cursor.fetchall()}
        names = [*tables, *owner]
        try:
            placeholders = ", ".join(["%s"] * len(names))  # the names are parameters
            cursor.execute(
                f"SELECT name, SUM(pgsize) FROM dbstat WHERE name IN ({placeholders}) "
                "GROUP BY name",
                names,
            )
            measured = {name: int(size or 0) for name, size in cursor.fetchall()}
        except Exception:  # noqa: BLE001 - dbstat is an optional SQLite module
            cursor.execute("PRAGMA page_count")
            pages = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA page_size")
            return {
                "data": pages * int(cursor.fetchone()[0]),
                "indexes": None,
                "tables": {},
                "source": "SQLite page_count x page_size (whole database file; no dbstat)",
            }
    for table in tables:
        table_bytes = measured.get(table, 0)
        index_bytes = sum(size for name, size in measured.items() if owner.get(name) == table)
        per_table[table] = table_bytes + index_bytes
        data += table_bytes
        indexes += index_bytes
    return {"data": data, "indexes": indexes, "tables": per_table, "source": "SQLite dbstat"}


def process_memory_mb() -> int | None:
    """Resident memory of this process in MB: Python has no separate heap figure, and RSS is
    what the operating system counts against it."""
    try:
        return round(psutil.Process(os.getpid()).memory_info().rss / 1024 / 1024)
    except psutil.Error:
        return None


def health(now: datetime | None = None) -> dict[str, Any]:
    """``GET /api/batches/health``: the operations document's names and shape first (counts,
    performance over the last 24 hours, resources), then what else the console knows.

    Raises DatabaseError when the database cannot be read; the view answers it as 500
    ``{"status": "unhealthy", "error"}``."""
    now = now or timezone.now()
    counts = {status: 0 for status in BatchStatus.values}
    for row in BatchOperation.objects.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    recent = BatchOperation.objects.filter(
        finished_at__gte=now - RATE_WINDOW, started_at__isnull=False
    )
    agg = recent.aggregate(
        avg=Avg(
            ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        ),
        ok=Sum("succeeded_items"),
        bad=Sum("failed_items"),
    )
    ok, bad = agg["ok"] or 0, agg["bad"] or 0
    done = ok + bad
    avg = agg["avg"]
    stuck = BatchOperation.objects.filter(
        status=BatchStatus.PENDING, created_at__lt=now - STUCK_PENDING_AFTER
    ).count()
    sizes = storage_sizes()
    state = "healthy"
    if (
        stuck
        or counts[BatchStatus.PENDING] > PENDING_QUEUE_LIMIT
        or (done and bad / done > FAILURE_RATE_LIMIT)
    ):
        state = "degraded"
    return {
        "status": state,
        "timestamp": now.isoformat(),
        "batch_operations": {
            "total": sum(counts.values()),
            "pending": counts[BatchStatus.PENDING],
            # The document's "processing" is a batch a worker has started: ours is "running".
            "processing": counts[BatchStatus.RUNNING],
            "completed": counts[BatchStatus.COMPLETED],
            "failed": counts[BatchStatus.FAILED],
            "completed_with_errors": counts[BatchStatus.COMPLETED_WITH_ERRORS],
            "cancelled": counts[BatchStatus.CANCELLED],
            "stuck_pending": stuck,
        },
        "performance": {
            "avg_processing_time_ms": round(avg.total_seconds() * 1000, 1)
            if avg is not None
            else None,
            "success_rate": round(ok / done, 4) if done else None,
            "failure_rate": round(bad / done, 4) if done else None,
            "window": "24h",
        },
        "resources": {
            "db_collection_size_bytes": sizes["data"],
            "db_indexes_size_bytes": sizes["indexes"],
            "heap_used_mb": process_memory_mb(),
            "table_sizes_bytes": sizes["tables"],
            "size_source": sizes["source"],
        },
        "settings": {
            "maxItems": settings.BATCH_OPERATION_MAX_SIZE,
            "timeoutSeconds": settings.BATCH_OPERATION_TIMEOUT,
            "executorDelaySeconds": settings.BATCH_EXECUTOR_DELAY,
            "chunkSize": settings.BATCH_CHUNK_SIZE,
            "itemMaxAttempts": settings.BATCH_ITEM_MAX_ATTEMPTS,
        },
    }
