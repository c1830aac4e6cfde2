"""What housekeeping deletes of batch operations: batches finished long ago, with their items."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models

from batches.models import FINAL_STATUSES, BatchOperation
from opsconsole.housekeeping import older_than
from opsconsole.registries import register_retention_rule


def _finished(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.BATCH_RETENTION_DAYS)
    return BatchOperation._base_manager.filter(status__in=FINAL_STATUSES, finished_at__lt=cutoff)


def register_rules() -> None:
    """Called from ``BatchesConfig.ready``."""
    register_retention_rule(
        older_than(
            "finished batches",
            lambda: (
                f"finished more than {settings.BATCH_RETENTION_DAYS} days ago, with their items"
            ),
            _finished,
        )
    )
