"""Saved health reports (``opsreport``) and the report's layout from the check file."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from monitoring.models.checks import CheckStatus


class Report(models.Model):
    """A saved health report (``opsreport``): the rendered text, the sections it was rendered
    from (what the report page shows) and the figures behind it."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    title = models.CharField(max_length=200)
    overall_status = models.CharField(
        max_length=10, choices=CheckStatus.choices, default=CheckStatus.OK
    )
    text = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    # [{kind, title, status, ...}] as built by monitoring.observability.report; empty for
    # reports saved before sections were kept (their page shows the text).
    sections = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.title} ({self.created_at:%Y-%m-%d %H:%M})"


class ReportLayout(models.Model):
    """The check file's ``report:`` section as validated: which checks feed which section of
    the health report and its recent-rows queries. One row; none means the built-in layout."""

    layout = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"report layout ({self.updated_at:%Y-%m-%d %H:%M})"

    @classmethod
    def current(cls) -> dict[str, Any]:
        row = cls.objects.order_by("pk").first()
        return row.layout if row else {}

    @classmethod
    def store(cls, layout: dict[str, Any]) -> bool:
        """Saves the layout; whether it changed."""
        row = cls.objects.order_by("pk").first()
        if row is None:
            cls.objects.create(layout=layout)
            return True
        if row.layout == layout:
            return False
        row.layout = layout
        row.updated_at = timezone.now()
        row.save(update_fields=["layout", "updated_at"])
        return True
