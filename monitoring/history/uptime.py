"""Availability: the share of time a check was not critical, from its status changes.

A check's status only changes through ``Check.record``, which marks that run
``status_changed``; such runs are kept whatever their age (retention), so the timeline of
a check is exact without reading its other runs. Two queries for any number of checks: the
changes inside the last 30 days, summed per check and window by the database (the partial
index ``checkrun_changes_idx``), and the status each check had when the 30 days began (the
newest change before, same index).

Time before a check's first status change is no data: it counts neither for nor against,
and a check with no data in a window has ``None`` for it. Paused and unknown are not
critical, so they count as up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
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


# Seconds of a status span [t0, t1) inside a window [ws, now), per database: the span ends at
# the next status change of the check (LEAD) or now.
_SPAN_SECONDS = {
    "postgresql": "GREATEST(0, EXTRACT(EPOCH FROM (t1 - GREATEST(t0, %s))))",
    # julianday's days as doubles leave microsecond noise per span: rounded to the millisecond
    # (timestamps are stored to the microsecond), so 12 h of 24 reads 50 %, not 49.9999997 %.
    "sqlite": "ROUND(MAX(0, (julianday(t1) - MAX(julianday(t0), julianday(%s))) * 86400.0), 3)",
}
# SQLite binds one parameter per id: the ids go in chunks below its limit.
_SQLITE_IDS_PER_QUERY = 2000


def _spans_in_sql(
    ids: list[int], start: datetime, now: datetime
) -> dict[int, tuple[datetime, dict[str, tuple[float, float]]]]:
    """Per check with a status change in ``(start, now]``: the first such change and, per
    window, (seconds known, seconds critical) from that change on, summed by the database
    (one row per check instead of every change)."""
    vendor = connection.vendor
    seconds = _SPAN_SECONDS[vendor]
    adapt = connection.ops.adapt_datetimefield_value
    columns, column_params = [], []
    for span in WINDOWS.values():
        window_start = adapt(now - span)
        columns.append(f"SUM({seconds})")
        columns.append(f"SUM(CASE WHEN status = %s THEN {seconds} ELSE 0 END)")
        column_params += [window_start, CheckStatus.CRITICAL.value, window_start]
    table = CheckRun._meta.db_table
    chunks = (
        [ids]
        if vendor == "postgresql"
        else [ids[i : i + _SQLITE_IDS_PER_QUERY] for i in range(0, len(ids), _SQLITE_IDS_PER_QUERY)]
    )
    found: dict[int, tuple[datetime, dict[str, tuple[float, float]]]] = {}
    for chunk in chunks:
        if vendor == "postgresql":
            id_filter, id_params = "check_id = ANY(%s)", [chunk]
        else:
            id_filter, id_params = f"check_id IN ({', '.join(['%s'] * len(chunk))})", chunk
        # Served by checkrun_changes_idx (check_id, created_at) WHERE status_changed.
        sql = f"""
            SELECT check_id, MIN(t0), {", ".join(columns)}
            FROM (
                SELECT check_id, status, created_at AS t0,
                       LEAD(created_at, 1, %s) OVER (
                           PARTITION BY check_id ORDER BY created_at, id) AS t1
                FROM {table}
                WHERE status_changed AND {id_filter} AND created_at > %s AND created_at <= %s
            ) AS spans
            GROUP BY check_id"""
        params = [*column_params, adapt(now), *id_params, adapt(start), adapt(now)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for check_id, first, *sums in cursor.fetchall():
                found[check_id] = (
                    as_datetime(first),
                    {
                        key: (float(sums[2 * i] or 0), float(sums[2 * i + 1] or 0))
                        for i, key in enumerate(WINDOWS)
                    },
                )
    return found


def _combine(
    before: str | None,
    spans: tuple[datetime, dict[str, tuple[float, float]]] | None,
    now: datetime,
) -> Uptime:
    """Adds to the summed spans the stretch of each window before the check's first change
    in the 30 days, in the status it had when they began (``before``; None: no data)."""
    shares: dict[str, float | None] = {}
    for key, span in WINDOWS.items():
        window_start = now - span
        known, down = spans[1][key] if spans else (0.0, 0.0)
        lead_in = (
            max(0.0, (spans[0] - window_start).total_seconds())
            if spans
            else (now - window_start).total_seconds()
        )
        if before is not None:
            known += lead_in
            if before == CheckStatus.CRITICAL:
                down += lead_in
        shares[key] = 100.0 * (known - down) / known if known > 0 else None
    return Uptime(**shares)


def _changes_in_python(
    ids: list[int], start: datetime, now: datetime
) -> dict[int, list[tuple[datetime, str]]]:
    changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for check_id, at, status in raw_rows(
        CheckRun.objects.filter(
            check_obj_id__in=ids, status_changed=True, created_at__gt=start, created_at__lte=now
        )
        .order_by("check_obj_id", "created_at", "id")
        .values_list("check_obj_id", "created_at", "status")
    ):
        changes[check_id].append((as_datetime(at), status))
    return changes


def uptimes(check_ids: Iterable[int], now: datetime | None = None) -> dict[int, Uptime]:
    """Uptime over 24 h, 7 d and 30 d of each check, keyed by check id."""
    now = now or timezone.now()
    ids = list(check_ids)
    if not ids:
        return {}
    start = now - WINDOWS["d30"]
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
    if connection.vendor in _SPAN_SECONDS:
        spans = _spans_in_sql(ids, start, now)
        return {
            check_id: _combine(before.get(check_id), spans.get(check_id), now) for check_id in ids
        }
    changes = _changes_in_python(ids, start, now)
    return {
        check_id: Uptime(
            **{
                key: _share_up(before.get(check_id), changes.get(check_id, []), now - span, now)
                for key, span in WINDOWS.items()
            }
        )
        for check_id in ids
    }
