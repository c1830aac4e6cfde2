"""What housekeeping deletes of the monitoring app's data: old runs, rollups, resolved alerts, reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models

from monitoring.history.rollups import (
    BUCKETS_PER_QUERY,
    FIVE_MINUTES,
    fill_missing_rollups,
    floor_time,
    recompute_rollups,
    window_summarised,
)
from monitoring.models import Alert, AlertStatus, Check, CheckRun, Report
from monitoring.models.history import CheckRollup, RollupPeriod
from opsconsole.housekeeping import ChunkedDeleter, RuleResult, older_than
from opsconsole.registries import RetentionRule, register_retention_rule

# Old runs are deleted in time slices, oldest first: each chunk's SELECT walks one slice of
# checkrun_latest_idx instead of re-reading, after every chunk, the dead index entries that
# the chunks before it left at the front of the whole range.
RUN_SLICE = FIVE_MINUTES
# Before a window of old runs is deleted, its buckets are rolled up: one grouped query per
# period for the whole window.
ROLLUP_WINDOW = BUCKETS_PER_QUERY * FIVE_MINUTES
# Checks whose last-N boundary is older than the cutoff are excluded by id from the sliced
# pass and cleaned one by one; past this many, every check is cleaned one by one.
MAX_EXCLUDED_CHECKS = 500


def _keep_boundaries(keep_last: int) -> dict[int, tuple[datetime, int] | None]:
    """Each check's ``keep_last``-th newest run as (created_at, id), None when it has fewer
    runs: one query, an index lookup per check on checkrun_check_latest_idx."""
    nth = CheckRun.objects.filter(check_obj_id=models.OuterRef("pk")).order_by("-created_at", "-id")
    rows = (
        Check.objects.order_by()
        .annotate(
            keep_at=models.Subquery(nth.values("created_at")[keep_last - 1 : keep_last]),
            keep_id=models.Subquery(nth.values("id")[keep_last - 1 : keep_last]),
        )
        .values_list("pk", "keep_at", "keep_id")
    )
    return {pk: (at, run_id) if at is not None else None for pk, at, run_id in rows}


def _next_run(runs: models.QuerySet, at: datetime | None, until: datetime) -> datetime | None:
    """The time of the first of ``runs`` in ``[at, until)`` (``at`` None: from the oldest),
    so that a gap in the history costs one probe, not a slice per 5 minutes of it."""
    if at is not None:
        runs = runs.filter(created_at__gte=at)
    return (
        runs.filter(created_at__lt=until)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )


def _check_runs(now: datetime, deleter: ChunkedDeleter, result: RuleResult) -> None:
    # On a bucket boundary, so that no 5-minute bucket is left half deleted: the rollups job
    # recomputes buckets from ``now - CHECKRUN_RETENTION_DAYS`` on, and each of those must
    # still hold all its runs.
    cutoff = floor_time(now - timedelta(days=settings.CHECKRUN_RETENTION_DAYS), FIVE_MINUTES)
    keep_last = settings.CHECKRUN_KEEP_LAST
    old = CheckRun.objects.filter(created_at__lt=cutoff, status_changed=False)
    # Checks whose newest ``keep_last`` runs reach back past the cutoff (rare runs, or a
    # check stopped long ago) need their own boundary; for every other check (a check that
    # runs every few minutes) all its old runs may go. New runs only move boundaries newer,
    # so runs found deletable stay deletable while the pass lasts.
    special: dict[int, tuple[datetime, int] | None] = {}
    if keep_last:
        special = {
            pk: boundary
            for pk, boundary in _keep_boundaries(keep_last).items()
            if boundary is None or boundary[0] < cutoff
        }
    per_check = special
    if len(special) > MAX_EXCLUDED_CHECKS:
        per_check = {
            pk: special.get(pk, (cutoff, 0)) for pk in Check.objects.values_list("pk", flat=True)
        }
        bulk = None
    else:
        bulk = old.exclude(check_obj_id__in=list(special)) if special else old
    # Every window of old runs is rolled up from all its runs (every check's) before any of
    # them is deleted: the rollups job only looks back a few minutes, so after an upgrade or
    # a stopped worker these buckets would otherwise never be summarised. In steady state the
    # job has summarised the window already: the database checks that every run is counted
    # (``window_summarised``) and the recomputation is skipped. Buckets thinned by an earlier
    # pass count fewer runs than their rollup, which is kept: a rollup is never replaced by
    # one of fewer runs. A window of kept runs only (status changes) is rolled up once, when
    # it has no rollup yet (an upgrade).
    # Windows lie on a fixed grid so that each bucket belongs to one.
    everything = CheckRun.objects.filter(created_at__lt=cutoff)
    found = _next_run(everything, None, cutoff)
    while found is not None:
        start = floor_time(found, ROLLUP_WINDOW)
        end = min(start + ROLLUP_WINDOW, cutoff)
        deletable = _next_run(old, start, end) is not None
        if not deleter.dry_run and (
            not window_summarised(start, end)
            if deletable
            else not CheckRollup.objects.filter(
                period=RollupPeriod.FIVE_MINUTES, bucket__gte=start, bucket__lt=end
            ).exists()
        ):
            recompute_rollups(start, end)
        # Old runs are deleted in time slices, oldest first (see RUN_SLICE); a slice that
        # fitted in one chunk (sparse history) makes the next one twice as long.
        oldest = _next_run(bulk, start, end) if bulk is not None and deletable else None
        span = RUN_SLICE
        while oldest is not None:
            until = min(oldest + span, end)
            chunk = deleter.chunk
            removed = deleter.delete(
                bulk.filter(created_at__gte=oldest, created_at__lt=until), result
            )
            span = min(span * 2, ROLLUP_WINDOW) if removed < chunk else RUN_SLICE
            oldest = _next_run(bulk, until, end)
        found = _next_run(everything, end, cutoff)
    for check_id, boundary in sorted(per_check.items()):
        if boundary is None:
            continue  # fewer than keep_last runs: all of them stay
        at, run_id = boundary
        deleter.delete(
            old.filter(check_obj_id=check_id).filter(
                models.Q(created_at__lt=at) | models.Q(created_at=at, id__lt=run_id)
            ),
            result,
        )
    if not deleter.dry_run:
        # The raw runs that stay: buckets the rollups job missed while it was stopped.
        fill_missing_rollups(cutoff, now)


def _rollups(period: int, days: Callable[[], int]) -> Callable[[datetime], models.QuerySet]:
    def build(now: datetime) -> models.QuerySet:
        # Served by checkrollup_age_idx (period, bucket).
        return CheckRollup.objects.filter(period=period, bucket__lt=now - timedelta(days=days()))

    return build


def _resolved_alerts(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.RESOLVED_ALERT_RETENTION_DAYS)
    return Alert._base_manager.filter(status=AlertStatus.RESOLVED, resolved_at__lt=cutoff)


def _reports(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.REPORT_RETENTION_DAYS)
    return Report._base_manager.filter(created_at__lt=cutoff)


def register_rules() -> None:
    """Called from ``MonitoringConfig.ready``."""
    register_retention_rule(
        RetentionRule(
            "check runs",
            lambda: (
                f"older than {settings.CHECKRUN_RETENTION_DAYS} days, keeping the last "
                f"{settings.CHECKRUN_KEEP_LAST} and every status change per check"
            ),
            _check_runs,
        )
    )
    register_retention_rule(
        older_than(
            "check rollups (5 min)",
            lambda: f"5-minute rollups older than {settings.CHECKROLLUP_5M_RETENTION_DAYS} days",
            _rollups(RollupPeriod.FIVE_MINUTES, lambda: settings.CHECKROLLUP_5M_RETENTION_DAYS),
        )
    )
    register_retention_rule(
        older_than(
            "check rollups (1 h)",
            lambda: f"hourly rollups older than {settings.CHECKROLLUP_1H_RETENTION_DAYS} days",
            _rollups(RollupPeriod.HOUR, lambda: settings.CHECKROLLUP_1H_RETENTION_DAYS),
        )
    )
    register_retention_rule(
        older_than(
            "resolved alerts",
            lambda: (
                f"resolved more than {settings.RESOLVED_ALERT_RETENTION_DAYS} days ago, "
                "with their timeline"
            ),
            _resolved_alerts,
        )
    )
    register_retention_rule(
        older_than(
            "reports",
            lambda: f"health reports older than {settings.REPORT_RETENTION_DAYS} days",
            _reports,
        )
    )
