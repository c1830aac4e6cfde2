"""Alerts and their timeline.

An alert's state changes through its methods (``acknowledge``, ``resolve``, ``snooze``,
``add_note``), each writing an ``AlertEvent``: the timeline is the audit log.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from opsconsole.counters import observe

SNOOZE_MIN = timedelta(minutes=30)
SNOOZE_MAX = timedelta(hours=24)

# Observed at each acknowledgement (a durable counter: deleting old alerts never lowers it).
ACK_WAIT_HISTOGRAM = "opsconsole_alert_time_to_acknowledge_seconds"
# Seconds: a minute, five, fifteen, thirty, an hour, four hours, a day.
ACK_WAIT_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0)


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


SEVERITY_ORDER = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}
ACTIVE_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class AlertEventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    SEVERITY_CHANGED = "severity_changed", "Severity changed"
    NOTIFIED = "notified", "Notified"
    ESCALATED = "escalated", "Escalated"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    NOTE = "note", "Note"
    SNOOZED = "snoozed", "Snoozed"
    RESOLVED = "resolved", "Resolved"
    REOPENED = "reopened", "Reopened"


class AlertStateError(Exception):
    """The action does not apply to the alert in its current state (e.g. resolving twice)."""


class Alert(models.Model):
    dedup_key = models.CharField(max_length=200, help_text="One active alert per key.")
    check_obj = models.ForeignKey(
        "monitoring.Check",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
        db_column="check_id",
        verbose_name="check",
    )
    component = models.CharField(max_length=100, blank=True, default="")
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True, default="")
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices)
    status = models.CharField(max_length=15, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    flapping = models.BooleanField(default=False)
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    # Escalation counts from here; a severity rise restarts it at the new severity's steps.
    escalation_started_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    snoozed_until = models.DateTimeField(null=True, blank=True)
    # Binds the signed acknowledge links of this alert; a used link sets ack_link_used_at.
    ack_nonce = models.CharField(max_length=32, default="", blank=True, editable=False)
    ack_link_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # The hook's "find the active alert of this problem" relies on there being one.
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=models.Q(status__in=[*ACTIVE_STATUSES]),
                name="alert_one_active_per_key",
            ),
        ]
        indexes = [
            # escalate pass and /alerts/ default view: "active alerts, newest first"
            models.Index(fields=["status", "-opened_at"], name="alert_status_opened_idx"),
            # after-record hook: "the active alert of this dedup key"
            models.Index(fields=["dedup_key", "status"], name="alert_key_status_idx"),
            # activity view: "alerts resolved in a window"
            models.Index(fields=["resolved_at"], name="alert_resolved_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} [{self.severity}] {self.title}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.ack_nonce:
            self.ack_nonce = secrets.token_hex(8)
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def duration(self, now: datetime | None = None) -> timedelta:
        end = self.resolved_at or now or timezone.now()
        return end - self.opened_at

    def is_snoozed(self, now: datetime | None = None) -> bool:
        return bool(self.snoozed_until and self.snoozed_until > (now or timezone.now()))

    def _event(self, kind: str, actor: str, message: str = "", **data: Any) -> AlertEvent:
        return AlertEvent.objects.create(
            alert=self,
            kind=kind,
            actor=actor,
            message=message,
            data=data,
            created_at=timezone.now(),
        )

    # --- actions (one method each; the page, the link, the API and the admin call these) -----
    def acknowledge(self, actor: str, *, via: str = "") -> bool:
        """Stops escalation. False if it was not open (already acknowledged or resolved)."""
        now = timezone.now()
        with transaction.atomic():
            taken = Alert.objects.filter(pk=self.pk, status=AlertStatus.OPEN).update(
                status=AlertStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=actor[:150]
            )
            if not taken:
                self.refresh_from_db()
                return False
            self.status, self.acknowledged_at, self.acknowledged_by = (
                AlertStatus.ACKNOWLEDGED,
                now,
                actor[:150],
            )
            self._cancel_pending(now)
            self._event(
                AlertEventKind.ACKNOWLEDGED, actor, f"Acknowledged{f' via {via}' if via else ''}"
            )
            observe(ACK_WAIT_HISTOGRAM, (now - self.opened_at).total_seconds(), ACK_WAIT_BUCKETS)
        return True

    def acknowledge_by_link(self, nonce: str) -> bool:
        """Single use: the conditional update on the unused nonce is the claim."""
        now = timezone.now()
        with transaction.atomic():
            used = Alert.objects.filter(
                pk=self.pk, ack_nonce=nonce, ack_link_used_at__isnull=True
            ).update(ack_link_used_at=now)
            if not used:
                return False
            self.ack_link_used_at = now
            if not self.acknowledge("link", via="signed link"):
                self._event(
                    AlertEventKind.NOTE,
                    "link",
                    f"Acknowledge link used; alert was already {self.status}",
                )
        return True

    def resolve(self, actor: str, message: str = "") -> bool:
        now = timezone.now()
        with transaction.atomic():
            done = Alert.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(
                status=AlertStatus.RESOLVED, resolved_at=now, resolved_by=actor[:150]
            )
            if not done:
                self.refresh_from_db()
                return False
            self.status, self.resolved_at, self.resolved_by = AlertStatus.RESOLVED, now, actor[:150]
            self._cancel_pending(now)
            self._event(AlertEventKind.RESOLVED, actor, message or "Resolved")
        return True

    def snooze(self, actor: str, duration: timedelta) -> None:
        if not SNOOZE_MIN <= duration <= SNOOZE_MAX:
            raise ValueError("a snooze lasts from 30 minutes to 24 hours")
        if not self.is_active:
            raise AlertStateError("a resolved alert cannot be snoozed")
        until = timezone.now() + duration
        with transaction.atomic():
            Alert.objects.filter(pk=self.pk).update(snoozed_until=until)
            self.snoozed_until = until
            self._event(
                AlertEventKind.SNOOZED,
                actor,
                f"Notifications muted until {until:%Y-%m-%d %H:%M} UTC",
                until=until.isoformat(),
            )

    def add_note(self, actor: str, text: str) -> AlertEvent:
        text = text.strip()
        if not text:
            raise ValueError("a note needs some text")
        return self._event(AlertEventKind.NOTE, actor, text[:5000])

    def _cancel_pending(self, now: datetime) -> None:
        # Escalation stops here; recovery notices (queued when the check recovers) still go out.
        self.notifications.cancel_pending_escalation(now)


class AlertEvent(models.Model):
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=AlertEventKind.choices)
    actor = models.CharField(max_length=150, default="system")
    message = models.TextField(blank=True, default="")
    channel = models.CharField(max_length=100, blank=True, default="")
    outcome = models.CharField(max_length=20, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # alert page timeline and report notes: "events of one alert in order"
            models.Index(fields=["alert", "created_at", "id"], name="alertevent_alert_idx"),
            # admin changelist: "latest events overall"
            models.Index(fields=["-created_at", "-id"], name="alertevent_latest_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor} on alert {self.alert_id}"
