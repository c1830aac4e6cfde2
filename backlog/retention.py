"""What housekeeping deletes of the backlog: entries processed long ago."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models

from backlog.models import BacklogEntry, BacklogStatus
from opsconsole.housekeeping import older_than
from opsconsole.registries import register_retention_rule


def _processed(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.BACKLOG_PROCESSED_RETENTION_DAYS)
    return BacklogEntry._base_manager.filter(
        status=BacklogStatus.PROCESSED, processed_at__lt=cutoff
    )


def register_rules() -> None:
    """Called from ``BacklogConfig.ready``."""
    register_retention_rule(
        older_than(
            "processed backlog entries",
            lambda: f"processed more than {settings.BACKLOG_PROCESSED_RETENTION_DAYS} days ago",
            _processed,
        )
    )
