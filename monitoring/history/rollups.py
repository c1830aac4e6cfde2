"""Rollups: each pass recomputes the recent buckets from the raw runs in one grouped query
per period and upserts them.

Nothing happens on the ping / record path: a run is summarised by the next pass (every
minute), which recomputes the current and the previous 5-minute bucket, so a run committed
late (a slow probe, a runner that records its batch after the bucket turned) is still
counted. Hourly buckets are recomputed from the 5-minute ones. Every write is an upsert of a
whole bucket, so passes may overlap (two workers, a manual ``rollups`` beside the schedule)
and a pass may be repeated: the result is the same.

A bucket is only ever replaced by one that counts at least as many runs. Within a bucket, raw
runs are only ever added (late commits) or deleted (housekeeping, which keeps status changes
and the last N per check), so a recomputation that finds fewer runs than the stored bucket
read a bucket that housekeeping has already thinned: the stored summary is the complete one.
Housekeeping recomputes each slice's buckets from all their runs just before deleting them
(``recompute_rollups``), and fills buckets the every-minute job missed while it was stopped
(``fill_missing_rollups``), so no run is deleted unsummarised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import NotSupportedError, connection, models
from django.db.models import Case, Count, IntegerField, Max, Min, Q, Sum, Value, When
from django.utils import timezone

from monitoring.models import SEVERITY_RANK, CheckRun, CheckStatus
from monitoring.models.history import CheckRollup, RollupPeriod
from opsconsole.logging import job_context

logger = logging.getLogger(__name__)

FIVE_MINUTES = timedelta(seconds=RollupPeriod.FIVE_MINUTES)
HOUR = timedelta(seconds=RollupPeriod.HOUR)
# A backfill recomputes at most this many buckets per grouped query (one CASE branch each).
BUCKETS_PER_QUERY = 24
# Rows per upsert statement: 13 parameters each, well under SQLite's limit of 32,766.
UPSERT_BATCH = 500
# Rows per upsert statement on PostgreSQL, where they travel as 13 arrays.
UPSERT_BATCH_ARRAYS = 10_000
NOT_OK = (CheckStatus.WARNING, CheckStatus.CRITICAL, CheckStatus.UNKNOWN)
# Ranks by severity, unique per status so that the worst status can be read back from a MAX.
_RANK = {CheckStatus.OK: 0, CheckStatus.PAUSED: 1, CheckStatus.UNKNOWN: 2}
_RANK |= {s: SEVERITY_RANK[s] + 1 for s in (CheckStatus.WARNING, CheckStatus.CRITICAL)}
_STATUS_OF_RANK = {rank: status for status, rank in _RANK.items()}
UPDATE_FIELDS = [
    "run_count",
    "failed_count",
    "value_count",
    "value_sum",
    "value_min",
    "value_max",
    "duration_sum_ms",
    "duration_max_ms",
    "worst_status",
    "not_ok_seconds",
]


@dataclass
class RefreshResult:
    five_minute_buckets: int = 0
    hourly_buckets: int = 0
    seconds: float = 0.0


def floor_time(at: datetime, step: timedelta) -> datetime:
    """The start of the bucket of length ``step`` that holds ``at`` (UTC, aligned to epoch)."""
    seconds = int(step.total_seconds())
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _rank_of(field: str) -> Case:
    return Case(
        *(When(**{field: status}, then=Value(rank)) for status, rank in _RANK.items()),
        default=Value(0),
        output_field=IntegerField(),
    )


class SlotOf(models.Func):
    """Which of the evenly spaced ``starts`` (``step`` apart) a timestamp falls in, as
    arithmetic on its epoch seconds: one expression per row where a CASE would test up to 24
    branches. The query's WHERE keeps rows inside ``[starts[0], starts[-1] + step)``."""

    output_field = IntegerField()

    def __init__(self, field: str, starts: list[datetime], step: timedelta):
        if any(at != starts[0] + step * i for i, at in enumerate(starts)):
            raise ValueError("SlotOf needs evenly spaced starts")
        super().__init__(models.F(field))
        self.starts, self.step = starts, step

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"FLOOR((date_part('epoch', {sql}) - %s) / %s)::integer",
            [*params, self.starts[0].timestamp(), int(self.step.total_seconds())],
        )

    def as_sqlite(self, compiler, connection, **extra):
        # Stored as UTC text "YYYY-MM-DD HH:MM:SS.ffffff". SQLite's date functions round to
        # the millisecond (10:59:59.9999 would read as 11:00), so the fraction is cut off
        # first: whole seconds, floored by the integer division (rows before ``starts[0]``
        # are not read).
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"((CAST(strftime('%%s', substr({sql}, 1, 19)) AS INTEGER) - %s) / %s)",
            [*params, int(self.starts[0].timestamp()), int(self.step.total_seconds())],
        )

    def as_sql(self, compiler, connection, **extra):
        raise NotSupportedError(f"SlotOf has no SQL for {connection.vendor}")


# The columns of a rollup row as ``_upsert`` takes it: the bucket's key, then UPDATE_FIELDS.
COLUMNS = ["check_obj", "period", "bucket", *UPDATE_FIELDS]


def _upsert(rows: list[tuple]) -> None:
    """Inserts or replaces whole buckets (tuples in ``COLUMNS`` order, the bucket already
    adapted for the database), never with one of fewer runs (see the module doc):
    ``INSERT … ON CONFLICT DO UPDATE … WHERE``, which PostgreSQL and SQLite (3.24+) both have
    and Django's ``bulk_create`` cannot express. On PostgreSQL the rows travel as one array
    per column (``unnest``): the driver's cost is per placeholder, and a backfill writes
    hundreds of thousands of rows."""
    if not rows:
        return
    ops = connection.ops
    meta = CheckRollup._meta
    fields = [meta.get_field(name) for name in COLUMNS]
    table = ops.quote_name(meta.db_table)
    columns = [ops.quote_name(f.column) for f in fields]
    run_count = ops.quote_name(meta.get_field("run_count").column)
    distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    suffix = (
        f" ON CONFLICT ({', '.join(columns[:3])}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns[3:])
        + f" WHERE excluded.{run_count} >= {table}.{run_count}"
        # A bucket recomputed unchanged (housekeeping's pass over a day the job summarised)
        # writes no new row version.
        + f" AND ({', '.join(f'{table}.{c}' for c in columns[3:])}) {distinct} "
        + f"({', '.join(f'excluded.{c}' for c in columns[3:])})"
    )
    head = f"INSERT INTO {table} ({', '.join(columns)}) "
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
            for i in range(0, len(rows), UPSERT_BATCH_ARRAYS):
                batch = rows[i : i + UPSERT_BATCH_ARRAYS]
                cursor.execute(
                    f"{head}SELECT * FROM unnest({arrays}){suffix}",
                    [list(column) for column in zip(*batch, strict=True)],
                )
            return
        placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
        for i in range(0, len(rows), UPSERT_BATCH):
            batch = rows[i : i + UPSERT_BATCH]
            cursor.execute(
                f"{head}VALUES {', '.join([placeholders] * len(batch))}{suffix}",
                [value for row in batch for value in row],
            )


def _adapted(starts: list[datetime]) -> list:
    """The bucket starts as the database takes them in raw SQL (SQLite: UTC text)."""
    if connection.vendor == "postgresql":
        return starts
    return [connection.ops.adapt_datetimefield_value(at) for at in starts]


# What each grouped pass reads per (check, slot), in this order, then one column of its own
# from which the bucket's time not ok is derived.
_GROUPED = ("runs", "failed", "nvalues", "vsum", "vmin", "vmax", "dsum", "dmax", "rank")


def _write_pass(
    source: models.QuerySet,
    field: str,
    starts: list[datetime],
    step: timedelta,
    period: int,
    aggregates: dict[str, Any],
    not_ok_seconds: Callable[[int, Any], float],
) -> int:
    """Groups ``source`` by check and bucket of ``field`` (``aggregates``: the ``_GROUPED``
    names plus ``last``) and upserts one rollup per group; returns how many."""
    grouped = (
        source.order_by()
        .annotate(slot=SlotOf(field, starts, step))
        .values("check_obj_id", "slot")
        .annotate(**aggregates)
        .values_list("check_obj_id", "slot", *_GROUPED, "last")
    )
    buckets = _adapted(starts)
    rows = [
        (
            check_id,
            period,
            buckets[slot],
            runs or 0,
            failed or 0,
            nvalues or 0,
            vsum or 0.0,
            vmin,
            vmax,
            dsum or 0.0,
            dmax or 0.0,
            _STATUS_OF_RANK[rank],
            not_ok_seconds(failed or 0, last),
        )
        for check_id, slot, runs, failed, nvalues, vsum, vmin, vmax, dsum, dmax, rank, last in grouped
    ]
    _upsert(rows)
    return len(rows)


def _five_minute_pass(starts: list[datetime]) -> int:
    """5-minute buckets from the raw runs; each failing run counts for its check's interval,
    capped at the bucket."""
    length = FIVE_MINUTES.total_seconds()
    return _write_pass(
        CheckRun.objects.filter(
            created_at__gte=starts[0], created_at__lt=starts[-1] + FIVE_MINUTES
        ),
        "created_at",
        starts,
        FIVE_MINUTES,
        int(RollupPeriod.FIVE_MINUTES),
        {
            "runs": Count("id"),
            "failed": Count("id", filter=Q(status__in=NOT_OK)),
            "nvalues": Count("value"),
            "vsum": Sum("value"),
            "vmin": Min("value"),
            "vmax": Max("value"),
            "dsum": Sum("duration_ms"),
            "dmax": Max("duration_ms"),
            "rank": Max(_rank_of("status")),
            "last": Max("check_obj__interval_seconds"),
        },
        lambda failed, interval: float(min(length, failed * (interval or 60))),
    )


def _hourly_pass(starts: list[datetime]) -> int:
    """Hourly buckets from the 5-minute ones."""
    return _write_pass(
        CheckRollup.objects.filter(
            period=RollupPeriod.FIVE_MINUTES, bucket__gte=starts[0], bucket__lt=starts[-1] + HOUR
        ),
        "bucket",
        starts,
        HOUR,
        int(RollupPeriod.HOUR),
        {
            "runs": Sum("run_count"),
            "failed": Sum("failed_count"),
            "nvalues": Sum("value_count"),
            "vsum": Sum("value_sum"),
            "vmin": Min("value_min"),
            "vmax": Max("value_max"),
            "dsum": Sum("duration_sum_ms"),
            "dmax": Max("duration_max_ms"),
            "rank": Max(_rank_of("worst_status")),
            "last": Sum("not_ok_seconds"),
        },
        lambda failed, not_ok: not_ok or 0.0,
    )


def _starts(first: datetime, last: datetime, step: timedelta) -> list[datetime]:
    out = []
    at = first
    while at <= last:
        out.append(at)
        at += step
    return out


def _chunks(starts: list[datetime]) -> list[list[datetime]]:
    return [starts[i : i + BUCKETS_PER_QUERY] for i in range(0, len(starts), BUCKETS_PER_QUERY)]


def refresh_rollups(now: datetime | None = None, since: datetime | None = None) -> RefreshResult:
    """Recomputes the 5-minute buckets from ``since`` (default: the previous bucket) to the
    current one, then the hours that hold them. Returns how many buckets were written."""
    started = time.monotonic()
    now = now or timezone.now()
    since = min(since or now - FIVE_MINUTES, now)
    # Past the raw-run retention, housekeeping has deleted most runs: recomputing those
    # buckets would overwrite a full summary with the few runs kept (status changes).
    since = max(since, now - timedelta(days=settings.CHECKRUN_RETENTION_DAYS))
    result = RefreshResult()
    fives = _starts(floor_time(since, FIVE_MINUTES), floor_time(now, FIVE_MINUTES), FIVE_MINUTES)
    for chunk in _chunks(fives):
        result.five_minute_buckets += _five_minute_pass(chunk)
    hours = _starts(floor_time(fives[0], HOUR), floor_time(fives[-1], HOUR), HOUR)
    for chunk in _chunks(hours):
        result.hourly_buckets += _hourly_pass(chunk)
    result.seconds = time.monotonic() - started
    return result


def recompute_rollups(first: datetime, until: datetime) -> RefreshResult:
    """Recomputes every check's 5-minute buckets in ``[first, until)`` (both on 5-minute
    boundaries) from the raw runs, then the hours that hold them; whatever their age, unlike
    ``refresh_rollups``. Housekeeping calls it on each slice of runs just before deleting it."""
    started = time.monotonic()
    result = RefreshResult()
    # Only the buckets from the first run to the last: a sparse window (kept status changes,
    # a rare check) costs a one-bucket query, not a 24-branch one.
    inside = CheckRun.objects.filter(created_at__gte=first, created_at__lt=until).order_by()
    oldest = inside.order_by("created_at").values_list("created_at", flat=True).first()
    if oldest is None:
        return result
    newest = inside.order_by("-created_at").values_list("created_at", flat=True).first()
    fives = _starts(
        floor_time(oldest, FIVE_MINUTES), floor_time(newest, FIVE_MINUTES), FIVE_MINUTES
    )
    for chunk in _chunks(fives):
        result.five_minute_buckets += _five_minute_pass(chunk)
    hours = _starts(floor_time(fives[0], HOUR), floor_time(fives[-1], HOUR), HOUR)
    for chunk in _chunks(hours):
        result.hourly_buckets += _hourly_pass(chunk)
    result.seconds = time.monotonic() - started
    return result


def _unsummarised_count(grouped: models.QuerySet, summaries: models.QuerySet) -> int:
    """How many (check, slot) groups of ``grouped`` (``check_obj_id``, ``slot``, ``n``) have no
    row in ``summaries`` (``check_obj_id``, ``slot``, ``run_count``) counting at least ``n``
    runs: one statement, joined and counted by the database."""
    grouped_sql, grouped_params = grouped.query.sql_with_params()
    summaries_sql, summaries_params = summaries.query.sql_with_params()
    sql = f"""
        SELECT COUNT(*) FROM ({grouped_sql}) AS g
        LEFT JOIN ({summaries_sql}) AS s ON s.check_obj_id = g.check_obj_id AND s.slot = g.slot
        WHERE s.run_count IS NULL OR s.run_count < g.n"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [*grouped_params, *summaries_params])
        return cursor.fetchone()[0]


def window_summarised(first: datetime, until: datetime) -> bool:
    """Whether every run in ``[first, until)`` (on 5-minute boundaries) is counted by its 5-minute
    rollup and every 5-minute rollup by its hourly one: in steady state the every-minute job
    has summarised a day before housekeeping reaches it, and recomputing it (hundreds of
    thousands of buckets built in Python) would change nothing. Two grouped statements the
    database answers with a count."""
    fives = _starts(first, until - FIVE_MINUTES, FIVE_MINUTES)
    # The hours that hold those buckets, whole.
    hour_first = floor_time(first, HOUR)
    hour_until = floor_time(until - FIVE_MINUTES, HOUR) + HOUR
    hours = _starts(hour_first, hour_until - HOUR, HOUR)
    runs = (
        CheckRun.objects.filter(created_at__gte=first, created_at__lt=until)
        .order_by()
        .annotate(slot=SlotOf("created_at", fives, FIVE_MINUTES))
        .values("check_obj_id", "slot")
        .annotate(n=Count("id"))
        .values("check_obj_id", "slot", "n")
    )
    five_rollups = CheckRollup.objects.filter(
        period=RollupPeriod.FIVE_MINUTES, bucket__gte=first, bucket__lt=until
    ).order_by()
    if _unsummarised_count(
        runs,
        five_rollups.annotate(slot=SlotOf("bucket", fives, FIVE_MINUTES)).values(
            "check_obj_id", "slot", "run_count"
        ),
    ):
        return False
    per_hour = (
        CheckRollup.objects.filter(
            period=RollupPeriod.FIVE_MINUTES, bucket__gte=hour_first, bucket__lt=hour_until
        )
        .order_by()
        .annotate(slot=SlotOf("bucket", hours, HOUR))
        .values("check_obj_id", "slot")
        .annotate(n=Sum("run_count"))
        .values("check_obj_id", "slot", "n")
    )
    hourly = (
        CheckRollup.objects.filter(
            period=RollupPeriod.HOUR, bucket__gte=hour_first, bucket__lt=hour_until
        )
        .order_by()
        .annotate(slot=SlotOf("bucket", hours, HOUR))
        .values("check_obj_id", "slot", "run_count")
    )
    return _unsummarised_count(per_hour, hourly) == 0


def fill_missing_rollups(since: datetime, now: datetime) -> RefreshResult:
    """Recomputes the 5-minute buckets from ``since`` to ``now`` that have runs but no rollup
    (the every-minute job was stopped, or the console was upgraded from raw runs only), with
    the bucket before each gap, which the job's last pass may have summarised half-way.

    Two index probes per bucket (576 for two days) instead of re-reading every run: in steady
    state nothing is missing and nothing is written."""
    result = RefreshResult()
    missing: list[datetime] = []
    previous: datetime | None = None
    for bucket in _starts(
        floor_time(since, FIVE_MINUTES), floor_time(now, FIVE_MINUTES), FIVE_MINUTES
    ):
        has_runs = CheckRun.objects.filter(
            created_at__gte=bucket, created_at__lt=bucket + FIVE_MINUTES
        ).exists()
        if (
            has_runs
            and not CheckRollup.objects.filter(
                period=RollupPeriod.FIVE_MINUTES, bucket=bucket
            ).exists()
        ):
            if previous is not None and (not missing or missing[-1] != previous):
                missing.append(previous)
            missing.append(bucket)
        previous = bucket if has_runs else None
    # Contiguous stretches, each recomputed in as few grouped queries as its length allows.
    stretch_start = None
    for i, bucket in enumerate(missing):
        if stretch_start is None:
            stretch_start = bucket
        if i + 1 == len(missing) or missing[i + 1] != bucket + FIVE_MINUTES:
            done = recompute_rollups(stretch_start, bucket + FIVE_MINUTES)
            result.five_minute_buckets += done.five_minute_buckets
            result.hourly_buckets += done.hourly_buckets
            stretch_start = None
    return result


def scheduled_rollups() -> int:
    """The every-minute job; returns how many buckets it wrote."""
    with job_context(job_name="rollups"):
        result = refresh_rollups()
        logger.debug(
            "rollups refreshed",
            extra={
                "five_minute_buckets": result.five_minute_buckets,
                "hourly_buckets": result.hourly_buckets,
                "duration_s": round(result.seconds, 3),
            },
        )
        return result.five_minute_buckets + result.hourly_buckets


def rollups_of(
    check_id: int, period: int, since: datetime, until: datetime
) -> models.QuerySet[CheckRollup]:
    """One check's buckets of ``period`` in ``[since, until)``, oldest first (served by the
    unique constraint's index)."""
    return CheckRollup.objects.filter(
        check_obj_id=check_id, period=period, bucket__gte=since, bucket__lt=until
    ).order_by("bucket")
