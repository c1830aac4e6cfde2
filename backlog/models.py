"""Pending sync entries: one row per thing to sync, claimed once by whichever worker gets it."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from opsconsole.redaction import mask_config

DEFAULT_SOURCE = "default"


class BacklogStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"


class BacklogEntry(models.Model):
    source = models.CharField(max_length=100, default=DEFAULT_SOURCE)
    key = models.CharField(max_length=255)
    reason = models.CharField(max_length=500, blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=12, choices=BacklogStatus.choices, default=BacklogStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Retries wait until this time; new entries are due at once.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Set by the claim: the worker that holds the entry reads its rows back by this token.
    claim_token = models.CharField(max_length=32, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "backlog entry"
        verbose_name_plural = "backlog entries"
        ordering = ["-id"]
        constraints = [
            # enqueue / bulk add: a key already waiting is not queued twice. Entries being
            # processed, processed or failed do not count: a change after the claim needs a
            # new sync.
            models.UniqueConstraint(
                fields=["source", "key"],
                condition=models.Q(status=BacklogStatus.PENDING),
                name="backlog_one_pending_per_key",
            ),
        ]
        indexes = [
            # process: "pending entries that are due", oldest first; small, since only
            # pending rows are in it.
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=models.Q(status=BacklogStatus.PENDING),
                name="backlog_due_idx",
            ),
            # status, metrics, admin filter: counts by (status, source) from the index alone.
            models.Index(fields=["status", "source"], name="backlog_status_source_idx"),
            # status and the backlog check: "oldest pending entry".
            models.Index(
                fields=["created_at"],
                condition=models.Q(status=BacklogStatus.PENDING),
                name="backlog_oldest_pending_idx",
            ),
            # delta view: "added in the window".
            models.Index(fields=["created_at"], name="backlog_created_idx"),
            # status "processed in the last hour", delta "processed in the window".
            models.Index(fields=["processed_at"], name="backlog_processed_idx"),
            # delta "failed in the window"; requeue of stale claims.
            models.Index(fields=["status", "updated_at"], name="backlog_status_updated_idx"),
            # admin search by key and mark_processed.
            models.Index(fields=["key", "source"], name="backlog_key_idx"),
            # the claim reads its rows back by token.
            models.Index(
                fields=["claim_token"],
                condition=models.Q(status=BacklogStatus.PROCESSING),
                name="backlog_claim_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.key} ({self.status})"

    def as_json(self) -> dict:
        return {
            "id": self.pk,
            "source": self.source,
            "key": self.key,
            "reason": self.reason,
            "payload": mask_config(self.payload),
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "processed_at": self.processed_at.isoformat() if self.processed_at else None,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
        }
