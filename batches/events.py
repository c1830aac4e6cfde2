"""The events batches count for /metrics, written where they happen (``opsconsole.counters``).

Kept apart from ``batches.metrics`` (which reads the models) so that the models, the services
and the executor can count without an import cycle.
"""

from __future__ import annotations

from datetime import datetime

from opsconsole.counters import count_event, count_events, histogram_events

CREATED = "batch_operations_created_total"
FINISHED = "batch_operations_total"  # seed 001's name: batches by operation_type and final status
ITEM_FAILURES = "batch_failures_total"
DURATION = "batch_processing_duration_seconds"
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120)


def count_created(operation: str) -> None:
    count_event(CREATED, operation_type=operation)


def count_item_failures(operation: str, count: int) -> None:
    """Items that reached ``failed``; a retried item that fails again counts again."""
    count_event(ITEM_FAILURES, count, operation_type=operation)


def count_finished(
    operation: str, status: str, started_at: datetime | None, finished_at: datetime
) -> None:
    """A batch reached a final status (again, after a retry: each finish is an event)."""
    events = [(FINISHED, {"operation_type": operation, "status": status}, 1.0)]
    if started_at is not None:
        seconds = (finished_at - started_at).total_seconds()
        events += histogram_events(DURATION, [seconds], DURATION_BUCKETS)
    count_events(events)
