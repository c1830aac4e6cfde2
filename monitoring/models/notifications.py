"""Notification channels, the escalation policy and the notifications owed.

Notifications are rows, one per alert, channel and escalation step, claimed once by the
``escalate`` pass that sends them.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import models
from django.utils import timezone

from monitoring.models.alerts import SEVERITY_ORDER, Alert, AlertSeverity
from opsconsole.redaction import mask_url, secret_values

# In a channel's recipients: every active staff user with an email address.
STAFF_RECIPIENTS = "staff"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (JSON)"
    SLACK = "slack", "Slack-compatible webhook"


class NotificationChannel(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    url = models.URLField(max_length=500, blank=True, default="", help_text="webhook and slack")
    recipients = models.TextField(
        blank=True, default="", help_text="email: addresses separated by commas"
    )
    min_severity = models.CharField(
        max_length=10, choices=AlertSeverity.choices, default=AlertSeverity.WARNING
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def accepts(self, severity: str) -> bool:
        return self.enabled and SEVERITY_ORDER[severity] >= SEVERITY_ORDER[self.min_severity]

    def recipient_list(self) -> list[str]:
        """The addresses; the word ``staff`` stands for every active staff user's address, read
        when a message goes out (the default channel made by ``bootstrap`` uses it)."""
        listed = [r.strip() for r in self.recipients.split(",") if r.strip()]
        if STAFF_RECIPIENTS not in listed:
            return listed
        staff = (
            get_user_model()
            .objects.filter(is_staff=True, is_active=True)
            .exclude(email="")
            .order_by("email")
            .values_list("email", flat=True)
        )
        return sorted({*(r for r in listed if r != STAFF_RECIPIENTS), *staff})

    @property
    def masked_url(self) -> str:
        """The URL as people see it: a webhook's path is its credential, so only scheme and
        host show."""
        return mask_url(self.url, webhook=True) if self.url else ""

    def secret_values(self) -> list[str]:
        return secret_values({"webhook_url": self.url}) if self.url else []


class EscalationPolicy(models.Model):
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices, unique=True)
    repeat_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Remind every N seconds until acknowledged; empty: never."
    )

    class Meta:
        verbose_name_plural = "escalation policies"
        ordering = ["severity"]

    def __str__(self) -> str:
        return f"{self.severity} escalation"


class EscalationStep(models.Model):
    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(default=0)
    after_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Seconds after the alert opened that this step fires, if unacknowledged.",
    )
    # Names rather than a relation: a check file may name a channel defined elsewhere, and an
    # empty list means "every enabled channel that accepts the severity".
    channels = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["policy", "after_seconds", "position"]

    def __str__(self) -> str:
        return f"{self.policy.severity} after {self.after_seconds}s → {self.channels or 'all'}"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class StepKind(models.TextChoices):
    """What a notification row is in the escalation policy."""

    ESCALATION = "escalation", "Escalation step"
    REMINDER = "reminder", "Reminder"
    RECOVERY = "recovery", "Recovery notice"


class NotificationQuerySet(models.QuerySet):
    def cancel_pending_escalation(self, now: datetime) -> int:
        """Escalation stops (acknowledged, resolved); recovery notices still go out."""
        return self.filter(
            status=NotificationStatus.PENDING, purpose=Notification.Purpose.ESCALATION
        ).update(status=NotificationStatus.CANCELLED, finished_at=now)


class Notification(models.Model):
    """One message owed to one channel for one alert and one escalation step: claimed once."""

    class Purpose(models.TextChoices):
        ESCALATION = "escalation", "Escalation"
        RECOVERY = "recovery", "Recovery"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="notifications"
    )
    # The step as data. The severity is part of its identity: a severity rise restarts
    # escalation at the new severity's steps, which must not collide with the rows the old
    # severity's steps left. Escalation steps count from 0 (the policy's first step), reminders
    # from 1; a recovery notice has no severity and number 0.
    step_kind = models.CharField(max_length=10, choices=StepKind.choices)
    step_severity = models.CharField(
        max_length=10, choices=AlertSeverity.choices, blank=True, default=""
    )
    step_number = models.PositiveIntegerField(default=0)
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.ESCALATION)
    status = models.CharField(
        max_length=10, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claim_token = models.CharField(max_length=32, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Planning inserts every due step each pass; this makes the insert idempotent.
            models.UniqueConstraint(
                fields=["alert", "channel", "step_kind", "step_severity", "step_number"],
                name="notification_once_per_step",
            ),
        ]
        indexes = [
            # escalate claim: "pending rows whose attempt is due"
            models.Index(fields=["status", "next_attempt_at"], name="notification_due_idx"),
            # escalate fetch: "rows this pass claimed"
            models.Index(fields=["claim_token"], name="notification_claim_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.step_key} of alert {self.alert_id} to {self.channel_id}: {self.status}"

    @property
    def step_key(self) -> str:
        """The step as people read it in events and messages: ``critical:s1`` (escalation
        step 1 of the critical policy), ``critical:r2`` (second reminder) or ``recovery``."""
        if self.step_kind == StepKind.RECOVERY:
            return "recovery"
        letter = "r" if self.step_kind == StepKind.REMINDER else "s"
        return f"{self.step_severity}:{letter}{self.step_number}"
