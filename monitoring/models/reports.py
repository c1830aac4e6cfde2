"""Saved health reports (``opsreport``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from monitoring.models.checks import CheckStatus


class Report(models.Model):
    """A saved health report (``opsreport``): the rendered text and the figures behind it."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    title = models.CharField(max_length=200)
    overall_status = models.CharField(
        max_length=10, choices=CheckStatus.choices, default=CheckStatus.OK
    )
    text = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.title} ({self.created_at:%Y-%m-%d %H:%M})"
