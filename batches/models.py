"""Batch operations and their items.

An item is a row of work claimed once: a worker takes a chunk of pending items with a lease and a
claim token, and its results only count if the items still carry that token when it records
them. A worker killed mid-chunk leaves its items leased; recovery puts them back once the lease
has expired, and the next delivery carries the same Idempotency-Key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from batches.events import count_finished


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (BatchStatus.PENDING, BatchStatus.RUNNING)
FINAL_STATUSES = (
    BatchStatus.COMPLETED,
    BatchStatus.COMPLETED_WITH_ERRORS,
    BatchStatus.FAILED,
    BatchStatus.CANCELLED,
)


class ItemStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


OPEN_ITEM_STATUSES = (ItemStatus.PENDING, ItemStatus.RUNNING)


# Called as hook(batch id, items to run) once a commit leaves a batch with work to do. The
# executor registers itself from BatchesConfig.ready, so the models never import it.
_work_queued_hooks: list[Callable[[uuid.UUID, int], None]] = []


def on_work_queued(hook: Callable[[uuid.UUID, int], None]) -> None:
    if hook not in _work_queued_hooks:
        _work_queued_hooks.append(hook)


def _work_queued(batch_id: uuid.UUID, items: int) -> None:
    for hook in _work_queued_hooks:
        hook(batch_id, items)


class BatchOperation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    operation = models.CharField(max_length=50)
    creator = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=24, choices=BatchStatus.choices, default=BatchStatus.PENDING
    )
    total_items = models.PositiveIntegerField(default=0)
    succeeded_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="", help_text="Why the batch stopped early.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Last sign of a worker on this batch (a claim, a recorded chunk) or of a queued task:
    # recovery re-queues active batches whose heartbeat is older than their lease.
    heartbeat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # GET /api/batches/creator/<c>/ and ?creator=: keyset walk newest first.
            models.Index(
                F("creator"),
                F("created_at").desc(),
                F("id").desc(),
                name="batch_creator_created_idx",
            ),
            # ?status= lists, pending counts for the check and metrics, recovery's active scan.
            models.Index(
                F("status"), F("created_at").desc(), F("id").desc(), name="batch_status_created_idx"
            ),
            # The unfiltered list.
            models.Index(F("created_at").desc(), F("id").desc(), name="batch_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.operation} batch {self.id} ({self.status})"

    # --- derived -----------------------------------------------------------------------------
    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def pending_items(self) -> int:
        if self.is_final:
            return 0
        return max(self.total_items - self.succeeded_items - self.failed_items, 0)

    @property
    def progress_pct(self) -> float:
        if not self.total_items:
            return 100.0
        return round(100.0 * (self.succeeded_items + self.failed_items) / self.total_items, 1)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    # --- state changes -------------------------------------------------------------------------
    def cancel(self, now: datetime | None = None) -> bool:
        """Stops an active batch before its next chunk. Items already in a worker's hands finish
        and are recorded; every pending item is cancelled. False if the batch had finished."""
        now = now or timezone.now()
        with transaction.atomic():
            changed = BatchOperation.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(
                status=BatchStatus.CANCELLED, finished_at=now, error="cancelled"
            )
            if changed:
                self.items.filter(status=ItemStatus.PENDING).update(
                    status=ItemStatus.CANCELLED, finished_at=now, updated_at=now, error="cancelled"
                )
                started_at = (
                    BatchOperation.objects.filter(pk=self.pk)
                    .values_list("started_at", flat=True)
                    .first()
                )
                count_finished(self.operation, BatchStatus.CANCELLED, started_at, now)
        self.refresh_from_db()
        return bool(changed)

    def retry_failed(self, now: datetime | None = None) -> int:
        """Puts the failed items of a finished batch back to pending and runs the batch again.
        Returns how many items will be re-run (0: nothing to retry, nothing changed)."""
        now = now or timezone.now()
        with transaction.atomic():
            locked = BatchOperation.objects.select_for_update().get(pk=self.pk)
            if locked.status not in FINAL_STATUSES or not locked.failed_items:
                self.refresh_from_db()
                return 0
            count = self.items.filter(status=ItemStatus.FAILED).update(
                status=ItemStatus.PENDING,
                attempts=0,
                error="",
                result=None,
                next_attempt_at=now,
                finished_at=None,
                claim_token=None,
                lease_until=None,
                updated_at=now,
            )
            # A fresh time budget for the re-run: the timeout counts from started_at.
            BatchOperation.objects.filter(pk=self.pk).update(
                status=BatchStatus.PENDING,
                failed_items=F("failed_items") - count,
                started_at=None,
                finished_at=None,
                error="",
                heartbeat_at=now,
            )
            transaction.on_commit(lambda: _work_queued(self.pk, count))
        self.refresh_from_db()
        return count


class BatchItem(models.Model):
    batch = models.ForeignKey(BatchOperation, on_delete=models.CASCADE, related_name="items")
    key = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    # Which claim holds the item; a worker whose lease was taken over records nothing.
    claim_token = models.UUIDField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "key"], name="batch_item_key_unique"),
        ]
        indexes = [
            # Claiming: "pending items of this batch due now", oldest first.
            models.Index(
                fields=["batch", "status", "next_attempt_at"], name="batch_item_claim_idx"
            ),
            # Recovery: "running items whose lease expired" (a small partial index).
            models.Index(
                fields=["lease_until"],
                name="batch_item_lease_idx",
                condition=Q(status=ItemStatus.RUNNING),
            ),
            # Activity view and failure rate: items finished in a window.
            models.Index(fields=["finished_at"], name="batch_item_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error or None,
            "result": self.result,
        }
