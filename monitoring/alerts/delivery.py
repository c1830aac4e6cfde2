"""Notification messages and the channels that carry them: email, JSON webhook, Slack."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail

from monitoring.alerts.report import ReportInputs, escalation_report, issue_of
from monitoring.alerts.tokens import ack_url, alert_url
from monitoring.models import ChannelKind, Notification, NotificationChannel, StepKind
from opsconsole.env import format_duration
from opsconsole.redaction import redact, redaction_scope

logger = logging.getLogger(__name__)


@dataclass
class Outgoing:
    channel: NotificationChannel
    rows: list[Notification]
    subject: str
    text: str
    payload: dict[str, Any]
    error: str | None = None
    grouped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _event_word(row: Notification) -> str:
    if row.purpose == Notification.Purpose.RECOVERY:
        return StepKind.RECOVERY
    return StepKind.REMINDER if row.step_kind == StepKind.REMINDER else StepKind.ESCALATION


def alert_summary(row: Notification, now: datetime) -> dict[str, Any]:
    alert = row.alert
    check = alert.check_obj
    summary = {
        "id": alert.pk,
        "event": _event_word(row),
        "step": row.step_key,
        "severity": alert.severity,
        "status": alert.status,
        "component": alert.component or (check.component if check else ""),
        "check": check.name if check else None,
        "title": alert.title,
        "issue": issue_of(alert),
        "opened_at": alert.opened_at.isoformat(),
        "duration": format_duration(alert.duration(now).total_seconds()),
        "occurrences": alert.occurrences,
        "url": alert_url(alert),
    }
    if row.purpose != Notification.Purpose.RECOVERY:
        summary["ack_url"] = ack_url(alert)
    return summary


def _headline(summary: dict[str, Any]) -> str:
    if summary["event"] == StepKind.RECOVERY:
        return f"[RESOLVED] {summary['title']} (after {summary['duration']})"
    prefix = "REMINDER " if summary["event"] == StepKind.REMINDER else ""
    return f"[{prefix}{summary['severity'].upper()}] {summary['title']}"


def _links(summary: dict[str, Any]) -> str:
    text = f"Alert: {summary['url']}"
    if "ack_url" in summary:
        text += f"\nAcknowledge (one click, expires): {summary['ack_url']}"
    return text


def build_single(
    channel: NotificationChannel, rows: list[Notification], inputs: ReportInputs, now: datetime
) -> Outgoing:
    """One alert's message; ``rows[0]`` speaks for all the rows it settles."""
    row = rows[0]
    summary = alert_summary(row, now)
    report = escalation_report(row.alert, inputs, now)
    headline = _headline(summary)
    text = f"{headline}\n{_links(summary)}\n\n{report}"
    summary["report"] = report
    payload = {"grouped": False, "count": 1, "text": text, "alerts": [summary]}
    return Outgoing(channel, rows, headline, text, payload)


def build_grouped(
    channel: NotificationChannel,
    groups: list[list[Notification]],
    now: datetime,
    inputs: dict[int, ReportInputs] | None = None,
) -> Outgoing:
    """One message for many alerts: each group holds one alert's rows, the first speaking.

    Grouping saves messages, not facts: every alert keeps its line (severity, component,
    issue, duration, link); an email adds each alert's escalation report as a section, and a
    webhook's JSON lists every alert's summary.
    """
    summaries = [alert_summary(group[0], now) for group in groups]
    rows = [row for group in groups for row in group]
    counts: dict[str, int] = {}
    for s in summaries:
        word = "resolved" if s["event"] == StepKind.RECOVERY else s["severity"]
        counts[word] = counts.get(word, 0) + 1
    described = ", ".join(f"{n} {word}" for word, n in sorted(counts.items()))
    subject = f"[Ops Console] {len(groups)} alerts: {described}"
    lines = [subject, ""]
    for s in summaries:
        lines.append(
            f"{_headline(s)} | component {s['component'] or '—'} | check {s['check'] or '—'} | "
            f"{s['issue']} | for {s['duration']}"
        )
        lines.append(f"    {_links(s)}".replace("\n", "\n    "))
    if channel.kind == ChannelKind.EMAIL and inputs is not None:
        for group in groups:
            alert = group[0].alert
            lines += ["", "=" * 72, escalation_report(alert, inputs[alert.pk], now)]
    text = "\n".join(lines)
    payload = {"grouped": True, "count": len(groups), "text": subject, "alerts": summaries}
    return Outgoing(channel, rows, subject, text, payload, grouped=True)


def build_test(channel: NotificationChannel, requested_by: str, about: str = "") -> Outgoing:
    """A message that only proves the channel works; it settles no notification row."""
    subject = f"[TEST] Ops Console test notification to {channel.name}"
    text = (
        f"{subject}\nRequested by {requested_by}"
        + (f" from {about}" if about else "")
        + ". If you read this, alerts of severity "
        f"{channel.min_severity} and above reach you through this channel."
    )
    payload = {"grouped": False, "count": 0, "test": True, "text": text, "alerts": []}
    return Outgoing(channel, [], subject, text, payload)


def send_test(channel: NotificationChannel, requested_by: str, about: str = "") -> str | None:
    """Sends a test notification now; None on success, else the error (as ``deliver``)."""
    with httpx.Client(headers={"User-Agent": "opsconsole-notify/1"}) as client:
        return deliver(build_test(channel, requested_by, about), client)


def test_channels(severity: str, requested_by: str, about: str) -> list[tuple[str, str | None]]:
    """A test notification to every enabled channel that takes ``severity``:
    [(channel name, None or the error)]; empty when no channel would be told."""
    channels = [c for c in NotificationChannel.objects.filter(enabled=True) if c.accepts(severity)]
    return [(c.name, send_test(c, requested_by, about)) for c in channels]


def report_test(outcomes: list[tuple[str, str | None]], severity: str) -> list[tuple[bool, str]]:
    """What the pages tell the user: (success, text) per channel, or why nobody was told."""
    if not outcomes:
        return [
            (
                False,
                f"No enabled channel accepts {severity} alerts: nobody would be notified. "
                "Add one in the admin (Notification channels).",
            )
        ]
    return [
        (error is None, f"{name}: test notification sent." if error is None else f"{name}: {error}")
        for name, error in outcomes
    ]


def timeout() -> float:
    return float(settings.ALERT_NOTIFY_TIMEOUT)


def deliver(message: Outgoing, client: httpx.Client) -> str | None:
    """Sends one message; returns None on success or an error an operator can act on, scrubbed
    of the channel's URL secrets (httpx and receivers quote the URL back)."""
    secrets = message.channel.secret_values()
    with redaction_scope(secrets):
        error = _send(message, client)
    return redact(error, secrets) if error else None


def _send(message: Outgoing, client: httpx.Client) -> str | None:
    channel = message.channel
    try:
        if channel.kind == ChannelKind.EMAIL:
            recipients = channel.recipient_list()
            if not recipients and settings.EMAIL_BACKEND.endswith("console.EmailBackend"):
                # No EMAIL_HOST and nobody to write to (a fresh install's staff channel):
                # the log is where the message can still be read.
                logger.warning(
                    "email channel %s: no recipients and no EMAIL_HOST; the message follows\n"
                    "%s\n%s",
                    channel.name,
                    message.subject,
                    message.text,
                    extra={"channel": channel.name},
                )
                return None
            if not recipients:
                return "no recipients configured"
            send_mail(message.subject[:200], message.text, None, recipients, fail_silently=False)
            return None
        if channel.kind == ChannelKind.SLACK:
            body: dict[str, Any] = {"text": message.text}
        else:
            body = message.payload
        response = client.post(channel.url, json=body, timeout=timeout())
        if response.status_code >= 400:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        return None
    except httpx.TimeoutException:
        return f"timed out after {timeout():g}s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    except Exception as exc:  # noqa: BLE001 - SMTP and socket errors: recorded, retried, never fatal
        return f"{type(exc).__name__}: {exc}"[:500]
