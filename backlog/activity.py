"""The backlog's events on ``/activity/``: entries that failed (registered with its activity
section in ``BacklogConfig.ready``)."""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse

from backlog.models import BacklogEntry, BacklogStatus
from opsconsole.registries import ActivityEvent


def _first_line(text: str, limit: int = 200) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def failure_events(since: datetime, until: datetime, limit: int) -> list[ActivityEvent]:
    """Entries that failed in the window (out of attempts or refused by their handler)."""
    # backlog_status_updated_idx: failed entries by their last change, newest first.
    entries = (
        BacklogEntry.objects.filter(
            status=BacklogStatus.FAILED, updated_at__gt=since, updated_at__lte=until
        )
        .only("source", "key", "attempts", "last_error", "updated_at")
        .order_by("-updated_at", "-id")[:limit]
    )
    url = f"{reverse('backlog')}?status={BacklogStatus.FAILED}"
    return [
        ActivityEvent(
            at=entry.updated_at,
            what="Backlog entry failed",
            subject=f"{entry.source}: {entry.key}",
            url=url,
            status="critical",
            detail=" · ".join(
                part
                for part in (
                    f"after {entry.attempts} attempt{'s' if entry.attempts != 1 else ''}",
                    _first_line(entry.last_error),
                )
                if part
            ),
        )
        for entry in entries
    ]
