"""Batches' events on ``/activity/``: batches that finished, however they ended (registered
with their activity section in ``BatchesConfig.ready``)."""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse

from batches.models import FINAL_STATUSES, BatchOperation, BatchStatus
from opsconsole.registries import ActivityEvent

# The badge of each way a batch ends.
TONE = {
    BatchStatus.COMPLETED: "ok",
    BatchStatus.COMPLETED_WITH_ERRORS: "warning",
    BatchStatus.FAILED: "critical",
    BatchStatus.CANCELLED: "unknown",
}


def finished_events(since: datetime, until: datetime, limit: int) -> list[ActivityEvent]:
    """Batches that reached a final status in the window."""
    # No index on finished_at: the batches table is small next to its items, and the window
    # filter plus the limit keep this to one pass over it.
    batches = (
        BatchOperation.objects.filter(
            status__in=FINAL_STATUSES, finished_at__gt=since, finished_at__lte=until
        )
        .only(
            "operation",
            "creator",
            "status",
            "total_items",
            "succeeded_items",
            "failed_items",
            "finished_at",
        )
        .order_by("-finished_at", "-id")[:limit]
    )
    return [
        ActivityEvent(
            at=batch.finished_at,
            what=f"Batch {batch.get_status_display().lower()}",
            subject=f"{batch.operation} by {batch.creator}",
            url=reverse("batch-detail", args=[batch.pk]),
            status=TONE.get(batch.status, ""),
            detail=(
                f"{batch.succeeded_items:,} of {batch.total_items:,} items succeeded"
                + (f", {batch.failed_items:,} failed" if batch.failed_items else "")
            ),
        )
        for batch in batches
    ]
