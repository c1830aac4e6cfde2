"""Check-file sections ``channels``, ``escalation``, ``maintenance`` and ``report``.

Validation reports every problem with where it is; applying is an upsert by name (by
severity for the escalation policy), ``--prune`` deletes what the file does not name.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from monitoring.checks.checkfile import Section
from monitoring.models import (
    AlertSeverity,
    ChannelKind,
    Check,
    EscalationPolicy,
    EscalationStep,
    MaintenanceWindow,
    NotificationChannel,
    WindowSource,
)
from monitoring.observability.report import apply_layout, validate_layout
from opsconsole.env import parse_duration

CHANNEL_FIELDS = {"name", "kind", "url", "to", "min_severity", "enabled"}
WINDOW_FIELDS = {"name", "check", "component", "start", "end", "reason"}


def _named_entry(
    entry: Any,
    section: str,
    noun: str,
    index: int,
    allowed: set[str] | frozenset[str],
    seen: set[str],
    problems: list[str],
) -> tuple[Any, str] | None:
    """(name, how problems name the entry) of one entry of a list section, after the checks
    every such entry shares: a mapping, a unique name of up to 100 characters, known fields.
    None when the entry is not a mapping at all."""
    if not isinstance(entry, dict):
        problems.append(f"{section}[{index}]: must be a mapping")
        return None
    name = entry.get("name")
    where = f"{noun} {name!r}" if isinstance(name, str) and name else f"{section}[{index}]"
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        problems.append(f"{where}: name: is required (up to 100 characters)")
    elif name in seen:
        problems.append(f"{where}: name: appears more than once")
    else:
        seen.add(name)
    for key in entry:
        if key not in allowed:
            problems.append(f"{where}: {key}: unknown field; allowed: {', '.join(sorted(allowed))}")
    return name, where


def _validate_channels(raw: Any, document: dict, problems: list[str]) -> list[dict]:
    if not isinstance(raw, list):
        problems.append("channels: must be a list of {name, kind, url|to, min_severity}")
        return []
    parsed, seen = [], set()
    for index, entry in enumerate(raw):
        named = _named_entry(entry, "channels", "channel", index, CHANNEL_FIELDS, seen, problems)
        if named is None:
            continue
        name, where = named
        kind = entry.get("kind")
        if kind not in ChannelKind.values:
            problems.append(f"{where}: kind: must be one of {', '.join(ChannelKind.values)}")
        url = entry.get("url", "")
        recipients: list[str] = []
        if kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                problems.append(f"{where}: url: a {kind} channel needs an http(s) URL")
        elif kind == ChannelKind.EMAIL:
            to = entry.get("to")
            recipients = [to] if isinstance(to, str) else to if isinstance(to, list) else []
            if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
                problems.append(f"{where}: to: an email channel needs one or more addresses")
        severity = entry.get("min_severity", AlertSeverity.WARNING)
        if severity not in AlertSeverity.values:
            problems.append(f"{where}: min_severity: must be one of info, warning, critical")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(f"{where}: enabled: must be true or false")
        parsed.append(
            {
                "name": name,
                "kind": kind,
                "url": url if isinstance(url, str) else "",
                "recipients": ", ".join(r for r in recipients if isinstance(r, str)),
                "min_severity": severity,
                "enabled": enabled,
            }
        )
    return parsed


def _apply_channels(entries: list[dict], prune: bool) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    existing = {c.name: c for c in NotificationChannel.objects.all()}
    for entry in entries:
        values = {k: v for k, v in entry.items() if k != "name"}
        channel = existing.get(entry["name"])
        if channel is None:
            NotificationChannel.objects.create(name=entry["name"], **values)
            counts["created"] += 1
        elif any(getattr(channel, k) != v for k, v in values.items()):
            NotificationChannel.objects.filter(pk=channel.pk).update(**values)
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    if prune:
        names = [e["name"] for e in entries]
        counts["deleted"] = (
            NotificationChannel.objects.exclude(name__in=names)
            .delete()[1]
            .get("monitoring.NotificationChannel", 0)
        )
    return counts


def _duration(value: Any, where: str, problems: list[str]) -> float | None:
    try:
        return parse_duration(value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _validate_escalation(raw: Any, document: dict, problems: list[str]) -> dict[str, dict]:
    if not isinstance(raw, dict):
        problems.append(
            "escalation: must map a severity (critical, warning, info) to {steps, repeat}"
        )
        return {}
    parsed: dict[str, dict] = {}
    for severity, policy in raw.items():
        where = f"escalation.{severity}"
        if severity not in AlertSeverity.values:
            problems.append(f"{where}: unknown severity; use critical, warning or info")
            continue
        if not isinstance(policy, dict):
            problems.append(f"{where}: must be a mapping such as {{steps: [...], repeat: 15m}}")
            continue
        for key in policy:
            if key not in ("steps", "repeat"):
                problems.append(f"{where}: {key}: unknown field; allowed: repeat, steps")
        steps_raw = policy.get("steps", [])
        if not isinstance(steps_raw, list):
            problems.append(f"{where}.steps: must be a list of {{after, channels}}")
            steps_raw = []
        steps = []
        for index, step in enumerate(steps_raw):
            step_where = f"{where}.steps[{index}]"
            if not isinstance(step, dict):
                problems.append(f"{step_where}: must be a mapping {{after, channels}}")
                continue
            for key in step:
                if key not in ("after", "channels"):
                    problems.append(f"{step_where}: {key}: unknown field; allowed: after, channels")
            after = _duration(step.get("after", 0), f"{step_where}.after", problems)
            channels = step.get("channels", [])
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                problems.append(f"{step_where}.channels: must be a list of channel names")
                channels = []
            steps.append({"after": int(after or 0), "channels": channels})
        repeat = policy.get("repeat")
        repeat_seconds = None
        if repeat is not None:
            repeat_seconds = _duration(repeat, f"{where}.repeat", problems)
            if repeat_seconds is not None and repeat_seconds < 60:
                problems.append(f"{where}.repeat: must be at least 1m (escalate runs every minute)")
        parsed[severity] = {
            "steps": steps,
            "repeat": int(repeat_seconds) if repeat_seconds else None,
        }
    return parsed


def _apply_escalation(policies: dict[str, dict], prune: bool) -> dict[str, int]:
    counts = {"updated": 0, "unchanged": 0, "deleted": 0}
    for severity, spec in policies.items():
        policy, _ = EscalationPolicy.objects.get_or_create(severity=severity)
        current = [
            (s.after_seconds, s.channels)
            for s in policy.steps.order_by("after_seconds", "position")
        ]
        wanted = [(s["after"], s["channels"]) for s in spec["steps"]]
        if current == wanted and policy.repeat_seconds == spec["repeat"]:
            counts["unchanged"] += 1
            continue
        policy.repeat_seconds = spec["repeat"]
        policy.save()
        policy.steps.all().delete()
        EscalationStep.objects.bulk_create(
            EscalationStep(policy=policy, position=i, after_seconds=after, channels=channels)
            for i, (after, channels) in enumerate(wanted)
        )
        counts["updated"] += 1
    if prune:
        counts["deleted"] = (
            EscalationPolicy.objects.exclude(severity__in=list(policies))
            .delete()[1]
            .get("monitoring.EscalationPolicy", 0)
        )
    return counts


def _moment(value: Any, where: str, problems: list[str]) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = parse_datetime(value.strip())
        if moment is None:
            problems.append(f"{where}: expected a date and time such as 2025-11-15T02:00:00Z")
            return None
    else:
        problems.append(f"{where}: expected a date and time such as 2025-11-15T02:00:00Z")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _validate_maintenance(raw: Any, document: dict, problems: list[str]) -> list[dict]:
    if not isinstance(raw, list):
        problems.append("maintenance: must be a list of {name, check|component, start, end}")
        return []
    checks_in_file = {
        c.get("name") for c in document.get("checks", []) or [] if isinstance(c, dict)
    }
    parsed, seen = [], set()
    for index, entry in enumerate(raw):
        named = _named_entry(
            entry, "maintenance", "maintenance", index, WINDOW_FIELDS, seen, problems
        )
        if named is None:
            continue
        name, where = named
        check = entry.get("check")
        component = entry.get("component", "")
        if check is not None and (
            not isinstance(check, str)
            or (check not in checks_in_file and not Check.objects.filter(name=check).exists())
        ):
            problems.append(
                f"{where}: check: no check named {check!r} in this file or the database"
            )
        if component and not isinstance(component, str):
            problems.append(f"{where}: component: must be a string")
        start = _moment(entry.get("start"), f"{where}: start", problems)
        end = _moment(entry.get("end"), f"{where}: end", problems)
        if start and end and end <= start:
            problems.append(f"{where}: end: must be after start")
        parsed.append(
            {
                "name": name,
                "check": check,
                "component": component or "",
                "starts_at": start,
                "ends_at": end,
                "reason": str(entry.get("reason", "")),
            }
        )
    return parsed


def _apply_maintenance(entries: list[dict], prune: bool) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "deleted": 0}
    for entry in entries:
        check = Check.objects.get(name=entry["check"]) if entry["check"] else None
        _, created = MaintenanceWindow.objects.update_or_create(
            name=entry["name"],
            defaults={
                "check_obj": check,
                "component": entry["component"],
                "starts_at": entry["starts_at"],
                "ends_at": entry["ends_at"],
                "reason": entry["reason"],
                "source": WindowSource.FILE,
            },
        )
        counts["created" if created else "updated"] += 1
    if prune:
        counts["deleted"] = (
            # Only the file's own windows: a mute a person set on a check page stays set.
            MaintenanceWindow.objects.from_file()
            .exclude(name__in=[e["name"] for e in entries])
            .delete()[1]
            .get("monitoring.MaintenanceWindow", 0)
        )
    return counts


SECTIONS = [
    Section("channels", _validate_channels, _apply_channels),
    Section("escalation", _validate_escalation, _apply_escalation),
    Section("maintenance", _validate_maintenance, _apply_maintenance),
    # The health report's layout: which checks feed which section, the recent-rows queries.
    Section("report", validate_layout, apply_layout),
]
