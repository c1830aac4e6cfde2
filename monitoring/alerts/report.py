"""The escalation report in the seed's format (Severity, Component, Issue, Duration, Attempted
fixes, Recent logs, Impact, Next steps), for the alert page and notification bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from monitoring.history.latest import latest_runs
from monitoring.models import (
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertSeverity,
    AlertStatus,
    CheckRun,
)
from opsconsole.env import format_duration

RECENT_RUNS = 10

NEXT_STEPS = {
    AlertSeverity.CRITICAL: [
        "Take action within 5 minutes: review the recent logs above.",
        "Attempt to restart or repair the affected service.",
        "If the issue persists after the fix attempt, escalate to the wider team.",
        "Acknowledge the alert so that reminders stop while you work on it.",
    ],
    AlertSeverity.WARNING: [
        "Investigate within 1 hour: note the time and the affected component.",
        "Check the logs for errors and plan a fix (may not need immediate action).",
        "Report in the next status update; acknowledge to stop escalation.",
    ],
    AlertSeverity.INFO: ["None needed: recorded for reference."],
}


@dataclass
class ReportInputs:
    notes: list[AlertEvent] = field(default_factory=list)
    runs: list[CheckRun] = field(default_factory=list)


def load_report_inputs(alerts: list[Alert]) -> dict[int, ReportInputs]:
    """Notes and recent runs of many alerts in two queries."""
    inputs = {alert.pk: ReportInputs() for alert in alerts}
    if not alerts:
        return inputs
    for note in AlertEvent.objects.filter(
        alert_id__in=list(inputs), kind=AlertEventKind.NOTE
    ).order_by("created_at", "id"):
        inputs[note.alert_id].notes.append(note)
    check_ids = {a.check_obj_id for a in alerts if a.check_obj_id}
    if check_ids:
        by_check = latest_runs(check_ids, RECENT_RUNS)
        for alert in alerts:
            if alert.check_obj_id:
                inputs[alert.pk].runs = by_check.get(alert.check_obj_id, [])
    return inputs


def issue_of(alert: Alert) -> str:
    return alert.message or alert.title


def impact_lines(alert: Alert) -> list[str]:
    lines = []
    check = alert.check_obj
    if check is not None:
        lines.append(f"Check {check.name} ({check.kind}) is {check.status}.")
        if check.description:
            lines.append(check.description)
    lines.append(
        f"Seen {alert.occurrences} time{'s' if alert.occurrences != 1 else ''} since it opened."
    )
    if alert.flapping:
        lines.append("The check keeps changing state; results are unreliable until it settles.")
    return lines


def escalation_report(alert: Alert, inputs: ReportInputs, now: datetime | None = None) -> str:
    now = now or timezone.now()
    check = alert.check_obj
    component = alert.component or (check.component if check else "") or "—"
    notes = inputs.notes
    fixes = "\n".join(f"- {n.created_at:%Y-%m-%d %H:%M} {n.actor}: {n.message}" for n in notes)
    logs = "\n".join(
        f"{r.created_at:%Y-%m-%d %H:%M:%S} {r.status.upper():<8} {r.duration_ms:>7.0f}ms  "
        f"{r.message}".rstrip()
        for r in inputs.runs
    )
    lasted = format_duration(alert.duration(now).total_seconds())
    heading = "RESOLVED" if alert.status == AlertStatus.RESOLVED else "ESCALATION"
    lines = [
        f"{heading}: {alert.title}",
        "",
        f"Severity: {alert.severity.upper()}",
        f"Component: {component}",
        f"Issue: {issue_of(alert)}",
        f"Duration: since {alert.opened_at:%Y-%m-%d %H:%M} UTC ({lasted})",
        f"Status: {alert.status}"
        + (
            f" by {alert.acknowledged_by}"
            if alert.acknowledged_by and alert.status == AlertStatus.ACKNOWLEDGED
            else ""
        ),
        "Attempted Fixes:" + (f"\n{fixes}" if fixes else " none recorded yet"),
        "",
        "Recent Logs:",
        logs or "(no runs recorded)",
        "",
        "Impact:",
        *[f"- {line}" for line in impact_lines(alert)],
        "",
        "Next Steps:",
        *[f"- {line}" for line in next_steps(alert, lasted)],
    ]
    return "\n".join(lines)


def next_steps(alert: Alert, lasted: str) -> list[str]:
    """What the reader should do now: it depends on the alert's state, not only its severity
    (an acknowledged alert is not to be acknowledged again, a resolved one needs no action)."""
    if alert.status == AlertStatus.RESOLVED:
        by = f" by {alert.resolved_by}" if alert.resolved_by else ""
        return [
            f"Resolved after {lasted}{by}: no action needed.",
            "Record the cause and the fix as a note if this should not happen again.",
        ]
    if alert.status == AlertStatus.ACKNOWLEDGED:
        return [
            f"Being handled: acknowledged by {alert.acknowledged_by or 'someone'}; "
            "reminders are stopped.",
            "Record attempted fixes as notes; they appear in this report.",
            "Resolve the alert once the service is back (a recovered check resolves it).",
        ]
    return NEXT_STEPS[AlertSeverity(alert.severity)]
