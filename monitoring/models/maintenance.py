"""Maintenance windows: notifications muted for a check or a component while checks run."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from monitoring.models.alerts import Alert


class MaintenanceWindow(models.Model):
    name = models.CharField(max_length=100, unique=True)
    check_obj = models.ForeignKey(
        "monitoring.Check",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="maintenance_windows",
        db_column="check_id",
        verbose_name="check",
    )
    component = models.CharField(max_length=100, blank=True, default="")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-starts_at"]
        indexes = [
            # escalate pass: "windows that have not ended"
            models.Index(fields=["ends_at"], name="maintenance_ends_idx"),
        ]

    def __str__(self) -> str:
        target = self.check_obj or self.component or "everything"
        return f"{self.name}: {target} {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%H:%M}"

    def covers(self, alert: Alert, now: datetime) -> bool:
        if not self.starts_at <= now < self.ends_at:
            return False
        if self.check_obj_id:
            return alert.check_obj_id == self.check_obj_id
        if self.component:
            return alert.component == self.component
        return True
