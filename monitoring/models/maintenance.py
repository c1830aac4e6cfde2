"""Maintenance windows: notifications muted for a check or a component while checks run."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from monitoring.models.alerts import Alert


class WindowSource(models.TextChoices):
    # Defined in a check file (loadchecks): the file owns it, --prune may delete it.
    FILE = "file", "Check file"
    # A person muted the check on its page: only a person (Unmute) or its expiry ends it.
    PAGE = "page", "Muted on the check page"


class MaintenanceWindowQuerySet(models.QuerySet):
    def from_file(self) -> MaintenanceWindowQuerySet:
        """Windows a check file defines: the only ones ``loadchecks --prune`` may delete."""
        return self.filter(source=WindowSource.FILE)

    def page_mutes(self) -> MaintenanceWindowQuerySet:
        """Mutes a person set on a check page."""
        return self.filter(source=WindowSource.PAGE)

    def active(self, now: datetime) -> MaintenanceWindowQuerySet:
        return self.filter(starts_at__lte=now, ends_at__gt=now)


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
    source = models.CharField(
        max_length=10,
        choices=WindowSource.choices,
        default=WindowSource.FILE,
        help_text="Check-file windows are replaced by loadchecks; page mutes are not.",
    )
    created_by = models.CharField(max_length=150, blank=True, default="")

    objects = MaintenanceWindowQuerySet.as_manager()

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
