"""What batches plug into monitoring: the ``batches`` check kind, the activity source and the
metric collector. All computed from the database, so any process sees what every worker did."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from batches.models import BatchItem, BatchOperation, BatchStatus, ItemStatus
from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import choice, duration

if TYPE_CHECKING:
    from monitoring.models import Check
    from monitoring.probing import ProbeContext

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120)


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

        from opsconsole.env import parse_duration

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


def activity(since: datetime, until: datetime) -> dict[str, int]:
    """Items that reached a final state (succeeded or failed) in the window, and batches."""
    items = BatchItem.objects.filter(finished_at__gte=since, finished_at__lt=until).aggregate(
        finished=Count("id"), failed=Count("id", filter=Q(status=ItemStatus.FAILED))
    )
    batches = BatchOperation.objects.filter(finished_at__gte=since, finished_at__lt=until).count()
    return {
        "items_finished": items["finished"],
        "items_failed": items["failed"],
        "batches_finished": batches,
    }


def collect_metrics(now: datetime) -> Iterable[Any]:
    totals = CounterMetricFamily(
        "batch_operations_total",
        "Batch operations by operation and current status",
        labels=["operation", "status"],
    )
    failures = CounterMetricFamily(
        "batch_failures_total", "Batch items that failed, by operation", labels=["operation"]
    )
    rows = (
        BatchOperation.objects.values("operation", "status")
        .annotate(n=Count("id"), failed=Sum("failed_items"))
        .order_by()
    )
    failed_by_op: dict[str, int] = {}
    pending = 0
    for row in rows:
        totals.add_metric([row["operation"], row["status"]], row["n"])
        failed_by_op[row["operation"]] = failed_by_op.get(row["operation"], 0) + (
            row["failed"] or 0
        )
        if row["status"] == BatchStatus.PENDING:
            pending += row["n"]
    for operation, failed in sorted(failed_by_op.items()):
        failures.add_metric([operation], failed)
    yield totals
    yield failures

    yield GaugeMetricFamily(
        "batch_pending_operations", "Batch operations waiting for a worker", value=pending
    )

    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    finished = BatchOperation.objects.filter(finished_at__isnull=False, started_at__isnull=False)
    aggregates: dict[str, Any] = {
        f"le_{bound}": Count(
            "id", filter=Q(finished_at__lte=F("started_at") + timedelta(seconds=bound))
        )
        for bound in DURATION_BUCKETS
    }
    agg = finished.aggregate(total=Count("id"), seconds=Sum(took), **aggregates)
    buckets = [(str(float(bound)), agg[f"le_{bound}"]) for bound in DURATION_BUCKETS]
    buckets.append(("+Inf", agg["total"]))
    total_seconds = agg["seconds"].total_seconds() if agg["seconds"] is not None else 0.0
    yield HistogramMetricFamily(
        "batch_processing_duration_seconds",
        "Time from a batch's start to its end",
        buckets=buckets,
        sum_value=total_seconds,
    )
