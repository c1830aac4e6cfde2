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

from opsconsole.logging import job_context
from opsconsole.models import IdempotentRequest
from opsconsole.registries import RetentionRule, register_retention_rule, retention_rules

logger = logging.getLogger(__name__)

TARGET_SECONDS = 0.25
FIRST_CHUNK = 1000
MIN_CHUNK = 50


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
# Each app registers the rules for the data it owns (opsconsole.registries); this module has
# the deleter and the rules of the plumbing's own tables (django-q2 results, idempotency keys).


def older_than(
    name: str, keeps: Callable[[], str], build: Callable[[datetime], models.QuerySet]
) -> RetentionRule:
    """A rule that deletes every row of ``build(now)``; ``keeps`` describes it (from settings)."""

    def run(now: datetime, deleter: ChunkedDeleter, result: RuleResult) -> None:
        deleter.delete(build(now), result)

    return RetentionRule(name, keeps, run)


def _queue_successes(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(hours=settings.QUEUE_SUCCESS_RETENTION_HOURS)
    return Task._base_manager.filter(success=True, stopped__lt=cutoff)


def _queue_failures(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(days=settings.QUEUE_FAILURE_RETENTION_DAYS)
    return Task._base_manager.filter(success=False, stopped__lt=cutoff)


def _idempotency_keys(now: datetime) -> models.QuerySet:
    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS)
    return IdempotentRequest.objects.filter(created_at__lt=cutoff)


def register_rules() -> None:
    """The plumbing's own rules; called from ``OpsConsoleConfig.ready``."""
    register_retention_rule(
        older_than(
            "queue successes",
            lambda: (
                f"django-q2 successful tasks older than {settings.QUEUE_SUCCESS_RETENTION_HOURS} h"
            ),
            _queue_successes,
        )
    )
    register_retention_rule(
        older_than(
            "queue failures",
            lambda: (
                f"django-q2 failed tasks older than {settings.QUEUE_FAILURE_RETENTION_DAYS} days"
            ),
            _queue_failures,
        )
    )
    register_retention_rule(
        older_than(
            "idempotency keys",
            lambda: (
                f"Idempotency-Key answers older than {settings.IDEMPOTENCY_KEY_RETENTION_HOURS} h"
            ),
            _idempotency_keys,
        )
    )


def run_housekeeping(
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[RuleResult], Any] | None = None,
) -> HousekeepingResult:
    now = now or timezone.now()
    outcome = HousekeepingResult(dry_run=dry_run)
    deleter = ChunkedDeleter(dry_run)
    for rule in retention_rules():
        result = RuleResult(rule.name, rule.keeps())
        rule.run(now, deleter, result)
        outcome.results.append(result)
        if progress:
            progress(result)
    return outcome


def scheduled_housekeeping() -> int:
    """The daily job; returns how many rows it removed."""
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
