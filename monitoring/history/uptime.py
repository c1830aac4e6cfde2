"""Availability: the share of time a check was not critical, from its status changes.

A check's status only changes through ``Check.record``, which marks that run
``status_changed``; such runs are kept whatever their age (retention), so the timeline of
a check is exact without reading its other runs. One query for any number of checks: the
changes inside the longest window asked for (30 days at most) with the status each check had
when it began, summed per check and window by the database (the partial index
``checkrun_changes_idx``).

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

    d1: float | None = None
    d7: float | None = None
    d30: float | None = None


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
# the next status change of the check (LEAD) or now. PostgreSQL's date_part is a double
# precision (EXTRACT is numeric, several times slower to sum over thousands of spans).
_SPAN_SECONDS = {
    "postgresql": "GREATEST(0, date_part('epoch', t1 - GREATEST(t0, %s)))",
    # julianday's days as doubles leave microsecond noise per span: rounded to the millisecond
    # (timestamps are stored to the microsecond), so 12 h of 24 reads 50 %, not 49.9999997 %.
    "sqlite": "ROUND(MAX(0, (julianday(t1) - MAX(julianday(t0), julianday(%s))) * 86400.0), 3)",
}
# SQLite binds one parameter per id (twice per id here): the ids go in chunks below its limit.
_SQLITE_IDS_PER_QUERY = 2000


def _windows(names: Iterable[str]) -> dict[str, timedelta]:
    chosen = {name: WINDOWS[name] for name in WINDOWS if name in set(names)}
    unknown = set(names) - set(WINDOWS)
    if unknown or not chosen:
        raise ValueError(f"uptime windows are {', '.join(WINDOWS)}, not {sorted(unknown)}")
    return chosen


def _uptimes_in_sql(
    ids: list[int], windows: dict[str, timedelta], now: datetime
) -> dict[int, Uptime]:
    """One query: the status each check had when the longest window began (the newest change
    before it, as a change at that instant) and the changes inside it, each span clipped to
    every window and summed per check by the database: one row per check, whatever the number
    of changes. Served by the partial index ``checkrun_changes_idx``."""
    vendor = connection.vendor
    seconds = _SPAN_SECONDS[vendor]
    adapt = connection.ops.adapt_datetimefield_value
    start = now - max(windows.values())
    columns, column_params = [], []
    for span in windows.values():
        window_start = adapt(now - span)
        columns.append(f"SUM({seconds})")
        columns.append(f"SUM(CASE WHEN status = %s THEN {seconds} ELSE 0 END)")
        column_params += [window_start, CheckStatus.CRITICAL.value, window_start]
    runs, checks = CheckRun._meta.db_table, Check._meta.db_table
    chunks = (
        [ids]
        if vendor == "postgresql"
        else [ids[i : i + _SQLITE_IDS_PER_QUERY] for i in range(0, len(ids), _SQLITE_IDS_PER_QUERY)]
    )
    found: dict[int, Uptime] = {}
    for chunk in chunks:
        if vendor == "postgresql":
            # bigint[], the column's type (psycopg would send small ids as smallint[]).
            in_ids, id_params = "= ANY(%s::bigint[])", [chunk]
        else:
            in_ids, id_params = f"IN ({', '.join(['%s'] * len(chunk))})", chunk
        # A check without a status before the windows gets a NULL status at their start: it
        # orders before its first change (LEAD ends that change's predecessor) and its own
        # span, no data, is left out of the sums.
        sql = f"""
            SELECT check_id, {", ".join(columns)}
            FROM (
                SELECT check_id, status, t0,
                       LEAD(t0, 1, %s) OVER (PARTITION BY check_id ORDER BY t0, id) AS t1
                FROM (
                    SELECT check_id, status, created_at AS t0, id
                    FROM {runs}
                    WHERE status_changed AND check_id {in_ids}
                      AND created_at > %s AND created_at <= %s
                    UNION ALL
                    SELECT c.id, (
                        SELECT r.status FROM {runs} r
                        WHERE r.status_changed AND r.check_id = c.id AND r.created_at <= %s
                        ORDER BY r.created_at DESC, r.id DESC LIMIT 1
                    ), %s, 0
                    FROM {checks} c WHERE c.id {in_ids}
                ) AS changes
            ) AS spans
            WHERE status IS NOT NULL
            GROUP BY check_id"""
        params = [
            *column_params,
            adapt(now),
            *id_params,
            adapt(start),
            adapt(now),
            adapt(start),
            adapt(start),
            *id_params,
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for check_id, *sums in cursor.fetchall():
                shares: dict[str, float | None] = {}
                for i, key in enumerate(windows):
                    known, down = float(sums[2 * i] or 0), float(sums[2 * i + 1] or 0)
                    shares[key] = 100.0 * (known - down) / known if known > 0 else None
                found[check_id] = Uptime(**shares)
    return found


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


def uptimes(
    check_ids: Iterable[int], now: datetime | None = None, windows: Iterable[str] = tuple(WINDOWS)
) -> dict[int, Uptime]:
    """Uptime of each check, keyed by check id, over the ``windows`` asked for (``d1``, ``d7``,
    ``d30``; the others are None): a page that shows only 24 h reads only 24 h of changes.
    One query on PostgreSQL and SQLite."""
    now = now or timezone.now()
    ids = list(check_ids)
    chosen = _windows(list(windows))
    if not ids:
        return {}
    if connection.vendor in _SPAN_SECONDS:
        found = _uptimes_in_sql(ids, chosen, now)
        return {check_id: found.get(check_id, Uptime()) for check_id in ids}
    start = now - max(chosen.values())
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
    changes = _changes_in_python(ids, start, now)
    return {
        check_id: Uptime(
            **{
                key: _share_up(before.get(check_id), changes.get(check_id, []), now - span, now)
                for key, span in chosen.items()
            }
        )
        for check_id in ids
    }
