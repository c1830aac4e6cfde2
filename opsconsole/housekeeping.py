"""Retention: deletes what is past its keep-by date, in short transactions.

Each rule deletes in chunks whose size adapts so that one transaction takes about
``TARGET_SECONDS``; a long DELETE would hold locks (and on SQLite the single write lock)
that the scheduler and the web processes need.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from django_q.models import Task

from backlog.models import BacklogEntry
from batches.models import BatchOperation
from monitoring.alert_models import Alert
from monitoring.models import Check, CheckRun, Report
from opsconsole.models import IdempotentRequest

logger = logging.getLogger(__name__)

TARGET_SECONDS = 0.25
FIRST_CHUNK = 1000
MIN_CHUNK = 50
FINISHED_BATCH_STATUSES = ("completed", "completed_with_errors", "failed", "cancelled")


@dataclass
class RuleResult:
    name: str
    rule: str
    removed: int = 0
    transactions: int = 0
    longest_seconds: float = 0.0


@dataclass
class HousekeepingResult:
    dry_run: bool
    results: list[RuleResult] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(r.removed for r in self.results)

    @property
    def longest_seconds(self) -> float:
        return max((r.longest_seconds for r in self.results), default=0.0)


def _max_chunk() -> int:
    # SQLite limits the number of bound parameters in one statement.
    return 5000 if connection.vendor == "sqlite" else 20000


class ChunkedDeleter:
    def __init__(self, dry_run: bool):
        self.dry_run = dry_run
        self.chunk = FIRST_CHUNK

    def delete(self, queryset: models.QuerySet, result: RuleResult) -> int:
        """Deletes every row of ``queryset`` (children with CASCADE first); returns the count."""
        model = queryset.model
        if self.dry_run:
            count = queryset.count()
            result.removed += count
            return count
        removed = 0
        for child, field_name in _cascading_children(model):
            child_qs = child._base_manager.filter(**{f"{field_name}__in": queryset.values("pk")})
            self._delete_rows(child_qs, RuleResult(result.name, result.rule), result)
        removed += self._delete_rows(queryset, result, result)
        return removed

    def _delete_rows(
        self, queryset: models.QuerySet, counted: RuleResult, timed: RuleResult
    ) -> int:
        model = queryset.model
        removed = 0
        while True:
            ids = list(queryset.order_by().values_list("pk", flat=True)[: self.chunk])
            if not ids:
                return removed
            started = time.monotonic()
            with transaction.atomic():
                model._base_manager.filter(pk__in=ids).delete()
            elapsed = time.monotonic() - started
            removed += len(ids)
            counted.removed += len(ids)
            timed.transactions += 1
            timed.longest_seconds = max(timed.longest_seconds, elapsed)
            self._adapt(elapsed, len(ids))

    def _adapt(self, elapsed: float, size: int) -> None:
        if size < self.chunk:
            return
        if elapsed <= 0:
            self.chunk = min(self.chunk * 2, _max_chunk())
            return
        ideal = int(size * TARGET_SECONDS / elapsed)
        # Grow gently, shrink at once: one slow chunk is a sign of lock contention or I/O.
        self.chunk = max(MIN_CHUNK, min(ideal, self.chunk * 2, _max_chunk()))


def _cascading_children(model: type[models.Model]) -> list[tuple[type[models.Model], str]]:
    children = []
    for rel in model._meta.related_objects:
        if (
            rel.on_delete is models.CASCADE
            and not rel.many_to_many
            and rel.related_model is not model
        ):
            children.append((rel.related_model, rel.field.name))
    return children


# --- rules -------------------------------------------------------------------------------------


def _check_runs(now: datetime, deleter: ChunkedDeleter, result: RuleResult) -> None:
    cutoff = now - timedelta(days=settings.CHECKRUN_RETENTION_DAYS)
    keep_last = settings.CHECKRUN_KEEP_LAST
    for check_id in Check.objects.order_by("id").values_list("id", flat=True):
        runs = CheckRun.objects.filter(check_obj_id=check_id)
        old = runs.filter(created_at__lt=cutoff, status_changed=False)
        if keep_last:
            # The newest ``keep_last`` runs stay whatever their age: the boundary is the
            # keep_last-th newest run by (created_at, id), read from checkrun_check_latest_idx.
            boundary = runs.order_by("-created_at", "-id").values_list("created_at", "id")[
                keep_last - 1 : keep_last
            ]
            boundary = list(boundary)
            if not boundary:
                continue
            at, run_id = boundary[0]
            old = old.filter(models.Q(created_at__lt=at) | models.Q(created_at=at, id__lt=run_id))
        deleter.delete(old, result)


def _simple(
    build: Callable[[datetime], models.QuerySet],
) -> Callable[[datetime, ChunkedDeleter, RuleResult], None]:
    def run(now: datetime, deleter: ChunkedDeleter, result: RuleResult) -> None:
        deleter.delete(build(now), result)

    return run


def _resolved_alerts(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.RESOLVED_ALERT_RETENTION_DAYS)
    return Alert._base_manager.filter(status="resolved", resolved_at__lt=cutoff)


def _processed_backlog(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.BACKLOG_PROCESSED_RETENTION_DAYS)
    return BacklogEntry._base_manager.filter(status="processed", processed_at__lt=cutoff)


def _finished_batches(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.BATCH_RETENTION_DAYS)
    return BatchOperation._base_manager.filter(
        status__in=FINISHED_BATCH_STATUSES, finished_at__lt=cutoff
    )


def _queue_successes(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(hours=settings.QUEUE_SUCCESS_RETENTION_HOURS)
    return Task._base_manager.filter(success=True, stopped__lt=cutoff)


def _queue_failures(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.QUEUE_FAILURE_RETENTION_DAYS)
    return Task._base_manager.filter(success=False, stopped__lt=cutoff)


def _reports(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.REPORT_RETENTION_DAYS)
    return Report._base_manager.filter(created_at__lt=cutoff)


def _idempotency_keys(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS)
    return IdempotentRequest.objects.filter(created_at__lt=cutoff)


def rules() -> list[tuple[str, str, Callable[[datetime, ChunkedDeleter, RuleResult], None]]]:
    """(name, what the rule keeps, function), read from settings each time."""
    s = settings
    return [
        (
            "check runs",
            f"older than {s.CHECKRUN_RETENTION_DAYS} days, keeping the last "
            f"{s.CHECKRUN_KEEP_LAST} and every status change per check",
            _check_runs,
        ),
        (
            "resolved alerts",
            f"resolved more than {s.RESOLVED_ALERT_RETENTION_DAYS} days ago, with their timeline",
            _simple(_resolved_alerts),
        ),
        (
            "processed backlog entries",
            f"processed more than {s.BACKLOG_PROCESSED_RETENTION_DAYS} days ago",
            _simple(_processed_backlog),
        ),
        (
            "finished batches",
            f"finished more than {s.BATCH_RETENTION_DAYS} days ago, with their items",
            _simple(_finished_batches),
        ),
        (
            "queue successes",
            f"django-q2 successful tasks older than {s.QUEUE_SUCCESS_RETENTION_HOURS} h",
            _simple(_queue_successes),
        ),
        (
            "queue failures",
            f"django-q2 failed tasks older than {s.QUEUE_FAILURE_RETENTION_DAYS} days",
            _simple(_queue_failures),
        ),
        (
            "reports",
            f"health reports older than {s.REPORT_RETENTION_DAYS} days",
            _simple(_reports),
        ),
        (
            "idempotency keys",
            f"Idempotency-Key answers older than {s.IDEMPOTENCY_KEY_RETENTION_HOURS} h",
            _simple(_idempotency_keys),
        ),
    ]


def run_housekeeping(
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[RuleResult], Any] | None = None,
) -> HousekeepingResult:
    now = now or timezone.now()
    outcome = HousekeepingResult(dry_run=dry_run)
    deleter = ChunkedDeleter(dry_run)
    for name, description, rule in rules():
        result = RuleResult(name, description)
        rule(now, deleter, result)
        outcome.results.append(result)
        if progress:
            progress(result)
    return outcome


def scheduled_housekeeping() -> int:
    """The daily job; returns how many rows it removed."""
    from opsconsole.logging import job_context

    with job_context(job_name="housekeeping"):
        outcome = run_housekeeping()
        for r in outcome.results:
            logger.info(
                "housekeeping %s: removed %d",
                r.name,
                r.removed,
                extra={
                    "rule": r.name,
                    "removed": r.removed,
                    "longest_transaction_s": round(r.longest_seconds, 3),
                },
            )
        return outcome.removed
