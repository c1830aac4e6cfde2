"""What housekeeping deletes of the monitoring app's data: old runs, resolved alerts, reports."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models

from monitoring.models import Alert, AlertStatus, Check, CheckRun, Report
from opsconsole.housekeeping import ChunkedDeleter, RuleResult, older_than
from opsconsole.registries import RetentionRule, register_retention_rule


def _check_runs(now: datetime, deleter: ChunkedDeleter, result: RuleResult) -> None:
    cutoff = now - timedelta(days=settings.CHECKRUN_RETENTION_DAYS)
    keep_last = settings.CHECKRUN_KEEP_LAST
    for check_id in Check.objects.order_by("id").values_list("id", flat=True):
        runs = CheckRun.objects.filter(check_obj_id=check_id)
        old = runs.filter(created_at__lt=cutoff, status_changed=False)
        if keep_last:
            # The newest ``keep_last`` runs stay whatever their age: the boundary is the
            # keep_last-th newest run by (created_at, id), read from checkrun_check_latest_idx.
            boundary = list(
                runs.order_by("-created_at", "-id").values_list("created_at", "id")[
                    keep_last - 1 : keep_last
                ]
            )
            if not boundary:
                continue
            at, run_id = boundary[0]
            old = old.filter(models.Q(created_at__lt=at) | models.Q(created_at=at, id__lt=run_id))
        deleter.delete(old, result)


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
