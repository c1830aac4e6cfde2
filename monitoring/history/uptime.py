"""Availability: the share of time a check was not critical, from its status changes.

A check's status only changes through ``Check.record``, which marks that run
``status_changed``; such runs are kept whatever their age (retention), so the timeline of
a check is exact without reading its other runs. Two queries for any number of checks: the
changes inside the last 30 days (the partial index ``checkrun_changes_idx``) and the status
each check had when the 30 days began (the newest change before, same index).

Time before a check's first status change is no data: it counts neither for nor against,
and a check with no data in a window has ``None`` for it. Paused and unknown are not
critical, so they count as up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from monitoring.history.rows import as_datetime, raw_rows
from monitoring.models import Check, CheckRun, CheckStatus

WINDOWS = {"d1": timedelta(days=1), "d7": timedelta(days=7), "d30": timedelta(days=30)}


@dataclass(frozen=True)
class Uptime:
    """Percent of time not critical over the last 24 h, 7 d and 30 d (None: no data)."""

    d1: float | None
    d7: float | None
    d30: float | None


def _share_up(
    before: str | None, changes: list[tuple[datetime, str]], start: datetime, now: datetime
) -> float | None:
    """Percent of ``[start, now)`` not critical, given the status before ``start`` (if known)
    and the changes (time, new status), oldest first."""
    status, since = before, start
    known = down = 0.0
    for at, new in changes:
        if at <= start:
            status = new
            continue
        if status is not None:
            span = (at - since).total_seconds()
            known += span
            if status == CheckStatus.CRITICAL:
                down += span
        status, since = new, at
    if status is not None:
        span = (now - since).total_seconds()
        known += span
        if status == CheckStatus.CRITICAL:
            down += span
    if known <= 0:
        return None
    return 100.0 * (known - down) / known


def uptimes(check_ids: Iterable[int], now: datetime | None = None) -> dict[int, Uptime]:
    """Uptime over 24 h, 7 d and 30 d of each check, keyed by check id."""
    now = now or timezone.now()
    ids = list(check_ids)
    if not ids:
        return {}
    start = now - WINDOWS["d30"]
    changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for check_id, at, status in raw_rows(
        CheckRun.objects.filter(
            check_obj_id__in=ids, status_changed=True, created_at__gt=start, created_at__lte=now
        )
        .order_by("check_obj_id", "created_at", "id")
        .values_list("check_obj_id", "created_at", "status")
    ):
        changes[check_id].append((as_datetime(at), status))
    newest_before = (
        CheckRun.objects.filter(
            check_obj_id=OuterRef("pk"), status_changed=True, created_at__lte=start
        )
        .order_by("-created_at", "-id")
        .values("status")[:1]
    )
    before = dict(
        Check.objects.filter(pk__in=ids)
        .order_by()
        .annotate(before=Subquery(newest_before))
        .values_list("pk", "before")
    )
    return {
        check_id: Uptime(
            **{
                key: _share_up(before.get(check_id), changes.get(check_id, []), now - span, now)
                for key, span in WINDOWS.items()
            }
        )
        for check_id in ids
    }
