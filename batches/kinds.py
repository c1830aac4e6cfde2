"""The ``batches`` check kind: pending batches, stuck ones and the item failure rate."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q

from batches.models import BatchItem, BatchOperation, BatchStatus, ItemStatus
from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import choice, duration
from opsconsole.env import parse_duration

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check


@register
class BatchesKind(CheckKind):
    """``metric: pending`` (batches waiting), ``stuck`` (pending longer than ``stuck_after``,
    default 10 min) or ``failure_rate`` (% of items failed among those finished in ``window``,
    default 1 h)."""

    name = "batches"
    label = "Batch operations"
    metrics = ("pending", "stuck", "failure_rate")

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(config, {"metric", "stuck_after", "window"}, errors)
        metric = choice(config, "metric", self.metrics, errors, "pending")
        duration(config, "stuck_after", errors, 600)
        duration(config, "window", errors, 3600)
        if errors:
            raise ConfigError(errors)
        return {**config, "metric": metric}

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        return {
            "pending": (500, 2000, "above"),
            "stuck": (0, 5, "above"),
            "failure_rate": (5, 10, "above"),
        }[config.get("metric", "pending")]

    def unit_for(self, config: dict[str, Any]) -> str:
        return " %" if config.get("metric") == "failure_rate" else ""

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        from django.utils import timezone

        now = timezone.now()
        metric = check.config.get("metric", "pending")
        if metric == "pending":
            count = BatchOperation.objects.filter(status=BatchStatus.PENDING).count()
            return Observation(value=count, message=f"{count} batches pending")
        if metric == "stuck":
            after = parse_duration(check.config.get("stuck_after", 600))
            stuck = BatchOperation.objects.filter(
                status=BatchStatus.PENDING, created_at__lt=now - timedelta(seconds=after)
            )
            count = stuck.count()
            oldest = list(stuck.order_by("created_at").values_list("id", flat=True)[:5])
            return Observation(
                value=count,
                message=f"{count} batches pending for more than {after:g} s"
                + ("; run `manage.py batches recover` and check the workers" if count else ""),
                details={"oldest": [str(i) for i in oldest]},
            )
        window = parse_duration(check.config.get("window", 3600))
        finished = BatchItem.objects.filter(finished_at__gte=now - timedelta(seconds=window))
        agg = finished.aggregate(
            done=Count("id"), failed=Count("id", filter=Q(status=ItemStatus.FAILED))
        )
        done, failed = agg["done"], agg["failed"]
        rate = round(100.0 * failed / done, 2) if done else 0.0
        return Observation(
            value=rate,
            message=f"{rate:g} % of {done} items failed in the last {window:g} s",
            details={"finished": done, "failed": failed},
        )
