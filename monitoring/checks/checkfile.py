"""Checks as code: load checks (and other sections) from a YAML or JSON file.

The whole file is validated before anything is written; applying it is one transaction and
an idempotent upsert by name. Other parts of the product add sections (``channels``,
``escalation``, …) with ``register_section``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from monitoring.checks.baseline import rule_problems
from monitoring.kinds import ConfigError, get_kind
from monitoring.models import Check, Direction, NotificationChannel
from monitoring.models.checks import default_interval_seconds, default_timeout_seconds
from opsconsole.env import parse_duration

CHECK_FIELDS = {
    "name",
    "kind",
    "component",
    "description",
    "interval",
    "timeout",
    "config",
    "warn",
    "crit",
    "direction",
    "debounce",
    "baseline",
    "depends_on",
    "enabled",
    "startup_grace",
}


class CheckFileError(Exception):
    """The file is invalid; ``problems`` lists every problem found, each naming where."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Section:
    name: str
    # validate(raw value, whole document, problems) -> parsed value; appends to problems
    validate: Callable[[Any, dict[str, Any], list[str]], Any]
    # apply(parsed value, prune) -> summary counts
    apply: Callable[[Any, bool], dict[str, int]]


_sections: dict[str, Section] = {}


def register_section(section: Section) -> None:
    _sections[section.name] = section


@dataclass
class LoadResult:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        parts = []
        for section, counts in self.counts.items():
            described = ", ".join(f"{n} {what}" for what, n in counts.items())
            parts.append(f"{section}: {described}")
        return "; ".join(parts)


def read_document(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CheckFileError([f"cannot read {path}: {exc.strerror}"]) from None
    try:
        if path.suffix.lower() == ".json":
            document = json.loads(text)
        else:
            document = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CheckFileError(
            [f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"]
        ) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise CheckFileError([f"{path}: the top level must be a mapping with a 'checks' list"])
    return document


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_check(
    raw: Any, index: int, known_names: set[str]
) -> tuple[dict[str, Any] | None, list[str]]:
    """Returns the model fields of one check entry and the problems found in it."""
    if not isinstance(raw, dict):
        return None, [f"checks[{index}]: must be a mapping with name, kind and config"]
    name = raw.get("name")
    where = f"check {name!r}" if isinstance(name, str) and name else f"checks[{index}]"
    problems: list[str] = []

    def problem(field_name: str, text: str) -> None:
        problems.append(f"{where}: {field_name}: {text}")

    if not isinstance(name, str) or not name.strip():
        problem("name", "is required")
    elif len(name) > 100:
        problem("name", "is longer than 100 characters")
    for key in raw:
        if key not in CHECK_FIELDS:
            problem(key, f"unknown field; allowed: {', '.join(sorted(CHECK_FIELDS))}")

    fields: dict[str, Any] = {"name": name}
    kind = None
    try:
        kind = get_kind(raw.get("kind", ""))
        fields["kind"] = kind.name
    except ConfigError as exc:
        problem("kind", exc.errors["kind"] if raw.get("kind") else "is required")

    config = raw.get("config", {})
    if not isinstance(config, dict):
        problem("config", "must be a mapping")
        config = {}
    if kind is not None:
        try:
            fields["config"] = kind.validate_config(config)
        except ConfigError as exc:
            for key, text in exc.errors.items():
                problem(key, text)

    for key, model_field, default in (
        ("interval", "interval_seconds", default_interval_seconds()),
        ("timeout", "timeout_seconds", default_timeout_seconds()),
    ):
        try:
            seconds = parse_duration(raw.get(key, default))
        except ValueError as exc:
            problem(key, str(exc))
            continue
        if seconds <= 0:
            problem(key, "must be greater than zero")
        elif key == "interval" and seconds < 1:
            problem(key, "must be at least 1s")
        fields[model_field] = int(seconds) if key == "interval" else seconds
    if (
        "timeout_seconds" in fields
        and "interval_seconds" in fields
        and fields["timeout_seconds"] > fields["interval_seconds"]
        and kind is not None
        and not kind.pushed
    ):
        problem("timeout", "must not be longer than the interval")

    for key in ("warn", "crit"):
        value = raw.get(key)
        if value is not None and not _number(value):
            problem(key, f"must be a number, got {value!r}")
        else:
            fields[key] = value
    direction = raw.get("direction", "")
    if direction and direction not in Direction.values:
        problem("direction", "must be 'above' or 'below'")
    fields["direction"] = direction or ""
    if (
        kind is not None
        and "config" in fields
        and (_number(fields.get("warn")) or _number(fields.get("crit")))
    ):
        defaults = kind.default_thresholds(fields["config"])
        warn = fields.get("warn") if fields.get("warn") is not None else defaults[0]
        crit = fields.get("crit") if fields.get("crit") is not None else defaults[1]
        effective = fields["direction"] or defaults[2]
        if warn is not None and crit is not None:
            if effective == Direction.ABOVE and warn > crit:
                problem(
                    "warn",
                    f"warn {warn:g} is beyond crit {crit:g} (direction above: warn must be ≤ crit)",
                )
            if effective == Direction.BELOW and warn < crit:
                problem(
                    "warn",
                    f"warn {warn:g} is beyond crit {crit:g} (direction below: warn must be ≥ crit)",
                )

    debounce = raw.get("debounce", 1)
    if isinstance(debounce, bool) or not isinstance(debounce, int) or not 1 <= debounce <= 100:
        problem("debounce", "must be a whole number from 1 to 100")
    fields["debounce"] = debounce

    baseline = raw.get("baseline")
    if baseline is not None:
        for key, text in rule_problems(baseline).items():
            problem(key, text)
    fields["baseline"] = baseline

    # None: one interval (Check.startup_grace).
    grace = raw.get("startup_grace")
    fields["startup_grace_seconds"] = None
    if grace is not None:
        try:
            fields["startup_grace_seconds"] = int(parse_duration(grace))
        except ValueError as exc:
            problem("startup_grace", str(exc))

    for key in ("component", "description"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            problem(key, "must be a string")
        fields[key] = value if isinstance(value, str) else ""
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problem("enabled", "must be true or false")
    fields["enabled"] = enabled

    depends_on = raw.get("depends_on")
    if depends_on is not None:
        if not isinstance(depends_on, str):
            problem("depends_on", "must be the name of another check")
        elif depends_on == name:
            problem("depends_on", "a check cannot depend on itself")
        elif depends_on not in known_names:
            problem("depends_on", f"no check named {depends_on!r} in this file or the database")
    fields["depends_on"] = depends_on
    return fields, problems


def validate_document(document: dict[str, Any]) -> dict[str, Any]:
    """Every section validated; raises CheckFileError listing all problems."""
    problems: list[str] = []
    allowed = {"checks", *_sections}
    for key in document:
        if key not in allowed:
            problems.append(f"{key}: unknown section; allowed: {', '.join(sorted(allowed))}")
    raw_checks = document.get("checks", [])
    if not isinstance(raw_checks, list):
        raise CheckFileError(problems + ["checks: must be a list"])
    names_in_file = [c.get("name") for c in raw_checks if isinstance(c, dict)]
    known = set(names_in_file) | set(Check.objects.values_list("name", flat=True))
    parsed: dict[str, Any] = {"checks": []}
    seen: set[str] = set()
    for index, raw in enumerate(raw_checks):
        fields, check_problems = validate_check(raw, index, known)
        problems.extend(check_problems)
        if fields and fields.get("name") in seen:
            problems.append(f"check {fields['name']!r}: name: appears more than once")
        if fields:
            seen.add(fields.get("name"))
            parsed["checks"].append(fields)
    for name, section in _sections.items():
        if name in document:
            parsed[name] = section.validate(document[name], document, problems)
    _check_escalation_channels(parsed, problems)
    if problems:
        raise CheckFileError(problems)
    return parsed


def _check_escalation_channels(parsed: dict[str, Any], problems: list[str]) -> None:
    """An escalation step naming a channel that neither this file nor the database defines
    would notify nobody: refused at load, not found out during an incident."""
    named = {
        (severity, index, channel)
        for severity, policy in (parsed.get("escalation") or {}).items()
        for index, step in enumerate(policy.get("steps", []))
        for channel in step.get("channels", [])
    }
    if not named:
        return
    in_file = {entry["name"] for entry in parsed.get("channels") or [] if entry.get("name")}
    known = in_file | set(NotificationChannel.objects.values_list("name", flat=True))
    for severity, index, channel in sorted(named):
        if channel not in known:
            defined = ", ".join(sorted(in_file)) or "none"
            problems.append(
                f"escalation.{severity}.steps[{index}].channels: no channel named {channel!r} "
                f"in this file's channels (defined here: {defined}) or in the database; "
                "define it under channels"
            )


def _apply_checks(entries: list[dict[str, Any]], prune: bool) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    existing = {check.name: check for check in Check.objects.all()}
    for entry in entries:
        values = {k: v for k, v in entry.items() if k not in ("name", "depends_on")}
        check = existing.get(entry["name"])
        if check is None:
            existing[entry["name"]] = Check.objects.create(name=entry["name"], **values)
            counts["created"] += 1
            continue
        changed = {k: v for k, v in values.items() if getattr(check, k) != v}
        if not changed:
            counts["unchanged"] += 1
            continue
        if "kind" in changed or "config" in changed:
            # What the kind remembered no longer describes the target: start afresh, now.
            changed.update(state={}, next_run_at=None, streak_status="", streak_count=0)
        for key, value in changed.items():
            setattr(check, key, value)
        # Only what the file changed: a run recorded or a slot claimed since the checks were
        # read above is not undone by a full save.
        check.save(update_fields=[*changed, "updated_at"])
        counts["updated"] += 1
    for entry in entries:
        check = existing[entry["name"]]
        target = existing.get(entry["depends_on"]) if entry["depends_on"] else None
        if target is None and entry["depends_on"]:
            target = Check.objects.get(name=entry["depends_on"])
        if check.depends_on_id != (target.pk if target else None):
            Check.objects.filter(pk=check.pk).update(depends_on=target)
    if prune:
        names = {entry["name"] for entry in entries}
        counts["deleted"] = (
            Check.objects.exclude(name__in=names).delete()[1].get("monitoring.Check", 0)
        )
    return counts


def apply_document(
    parsed: dict[str, Any], *, prune: bool = False, allow_empty: bool = False
) -> LoadResult:
    if prune and not parsed["checks"] and not allow_empty:
        # An empty or truncated file would otherwise delete every check (and resolve every
        # alert) in one go: almost always a mistake, so it must be asked for.
        raise CheckFileError(
            [
                "checks: the file has no checks, and --prune would delete every check; "
                "pass --allow-empty if that is what you want"
            ]
        )
    result = LoadResult()
    with transaction.atomic():
        result.counts["checks"] = _apply_checks(parsed["checks"], prune)
        for name, section in _sections.items():
            if name in parsed:
                result.counts[name] = section.apply(parsed[name], prune)
    return result


def load_check_file(
    path: str | Path, *, prune: bool = False, allow_empty: bool = False
) -> LoadResult:
    return apply_document(
        validate_document(read_document(path)), prune=prune, allow_empty=allow_empty
    )
