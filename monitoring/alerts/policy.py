"""The escalation policy as data, and which steps of it are due for one alert.

Defaults (seed 004): CRITICAL notifies on the first pass, widens after 30 minutes
unacknowledged and reminds every 15 minutes; WARNING notifies after 1 hour still open and
unacknowledged; INFO is recorded only. A step with no channels means "every enabled channel
that accepts the severity".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db.models import Exists, OuterRef

from monitoring.models import (
    ACTIVE_STATUSES,
    Alert,
    AlertEvent,
    AlertSeverity,
    EscalationPolicy,
    Notification,
    NotificationChannel,
    NotificationStatus,
    StepKind,
)

# The outcome of the timeline event "no channel: nobody was notified".
NOBODY = "nobody"

DEFAULT_POLICIES: dict[str, dict] = {
    AlertSeverity.CRITICAL: {
        "steps": [{"after": 0, "channels": []}, {"after": 1800, "channels": []}],
        "repeat": 900,
    },
    AlertSeverity.WARNING: {"steps": [{"after": 3600, "channels": []}], "repeat": None},
    AlertSeverity.INFO: {"steps": [], "repeat": None},
}


@dataclass(frozen=True)
class Step:
    index: int
    after: float
    channels: tuple[str, ...]


@dataclass
class Policy:
    severity: str
    steps: list[Step] = field(default_factory=list)
    repeat: float | None = None


def _policy(severity: str, steps: list[dict], repeat: float | None) -> Policy:
    ordered = sorted(steps, key=lambda s: s["after"])
    return Policy(
        severity,
        [Step(i, float(s["after"]), tuple(s.get("channels") or ())) for i, s in enumerate(ordered)],
        float(repeat) if repeat else None,
    )


def load_policies() -> dict[str, Policy]:
    """The stored policies (two queries), defaults for severities with none stored."""
    policies = {sev: _policy(sev, p["steps"], p["repeat"]) for sev, p in DEFAULT_POLICIES.items()}
    for stored in EscalationPolicy.objects.prefetch_related("steps"):
        steps = [{"after": s.after_seconds, "channels": s.channels} for s in stored.steps.all()]
        policies[stored.severity] = _policy(stored.severity, steps, stored.repeat_seconds)
    return policies


class ChannelSet:
    """Channels of one pass, resolved by name once."""

    def __init__(self, channels: list[NotificationChannel]):
        self.by_name = {c.name: c for c in channels}
        self.all = channels

    def resolve(self, names: tuple[str, ...], severity: str) -> list[NotificationChannel]:
        chosen = [self.by_name[n] for n in names if n in self.by_name] if names else self.all
        return [c for c in chosen if c.accepts(severity)]


class OwedStep(NamedTuple):
    """One notification owed: the fields that make a ``Notification`` row unique."""

    channel_id: int
    kind: StepKind
    severity: str
    number: int


def unheard_steps(alert: Alert, policy: Policy, channels: ChannelSet, now: datetime) -> list[Step]:
    """Steps due by now that no channel takes (none configured, all disabled or all below the
    alert's severity): nobody hears of the alert, and that must be visible."""
    start = alert.escalation_started_at
    return [
        s
        for s in policy.steps
        if start + timedelta(seconds=s.after) <= now
        and not channels.resolve(s.channels, alert.severity)
    ]


def unnotified_alerts() -> int:
    """Active alerts a step was due for with no channel to take it, and that no channel has
    told since: the dashboard's banner and ``metrics health`` show this number."""
    nobody = AlertEvent.objects.filter(alert=OuterRef("pk"), outcome=NOBODY)
    told = Notification.objects.filter(alert=OuterRef("pk"), status=NotificationStatus.SENT)
    return (
        Alert.objects.filter(status__in=ACTIVE_STATUSES)
        .filter(Exists(nobody))
        .exclude(Exists(told))
        .count()
    )


def due_notifications(
    alert: Alert, policy: Policy, channels: ChannelSet, now: datetime
) -> list[OwedStep]:
    """The steps owed by now, per channel. They are stable, so planning twice is harmless.

    Only the latest reminder is owed: a missed pass does not turn into a burst of reminders.
    """
    start = alert.escalation_started_at
    sev = alert.severity
    reached = [s for s in policy.steps if start + timedelta(seconds=s.after) <= now]
    owed: list[OwedStep] = []
    for step in reached:
        for channel in channels.resolve(step.channels, sev):
            owed.append(OwedStep(channel.pk, StepKind.ESCALATION, sev, step.index))
    if policy.repeat and reached:
        first = start + timedelta(seconds=reached[0].after)
        k = int((now - first).total_seconds() // policy.repeat)
        if k >= 1:
            at = first + timedelta(seconds=k * policy.repeat)
            window_start = at - timedelta(seconds=policy.repeat)
            told: set[int] = set()
            just_stepped: set[int] = set()
            for step in reached:
                step_at = start + timedelta(seconds=step.after)
                if step_at > at:
                    continue
                ids = {c.pk for c in channels.resolve(step.channels, sev)}
                told |= ids
                if step_at > window_start:
                    # This channel heard from a step since the last reminder: no double message.
                    just_stepped |= ids
            for channel_id in sorted(told - just_stepped):
                owed.append(OwedStep(channel_id, StepKind.REMINDER, sev, k))
    return owed
