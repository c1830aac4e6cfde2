"""The 30-minute health report in seed 004's layout: built from live readings and the checks
the check file's ``report:`` section names, saved as a ``Report`` (its sections for the page,
its text for mail and download), printed by ``opsreport`` and optionally mailed to staff.

The report is built once as a list of sections (plain JSON: what the page renders) and the text
is rendered from them, so the page and the mail never disagree.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psutil
from django.conf import settings
from django.utils import timezone

from monitoring.checks.sql import SqlTargetError, SqlTimeout, fetch_rows
from monitoring.history.latest import latest_runs
from monitoring.kinds.common import accept_database_key, validate_database_target
from monitoring.kinds.data import write_refusal
from monitoring.models import (
    ACTIVE_STATUSES,
    SEVERITY_RANK,
    Alert,
    Check,
    CheckRun,
    CheckStatus,
    Report,
    ReportLayout,
    worst,
)
from monitoring.observability.readings import (
    overall_state,
    read_database,
    read_queue,
    read_redis,
)
from opsconsole.env import format_duration, parse_duration
from opsconsole.logging import job_context

logger = logging.getLogger(__name__)

DEFAULT_TITLE = "OPS CONSOLE HEALTH REPORT"
WIDTH = 80
HEAVY = "═" * WIDTH
LIGHT = "─" * WIDTH
ICON = {
    CheckStatus.OK: "✅",
    CheckStatus.WARNING: "⚠️ ",
    CheckStatus.CRITICAL: "❌",
    CheckStatus.UNKNOWN: "❔",
    CheckStatus.PAUSED: "⏸ ",
    "info": "ℹ️ ",
}
# The seed's section icons; the text form only (the page uses CSS badges).
SECTION_ICON = {
    "processes": "📊",
    "database": "🗄️ ",
    "rows": "📈",
    "alerts": "🚨",
    "resources": "💾",
}
DATA_KINDS = ("freshness", "sql_value")
MB = 1024 * 1024

# --- the check file's ``report:`` section ----------------------------------------------------

LAYOUT_FIELDS = ("processes", "database", "recent_rows", "resources")
DATABASE_FIELDS = ("connection", "figures")
RESOURCES_FIELDS = ("figures",)
FIGURE_FIELDS = ("label", "check", "format")
ROWS_FIELDS = (
    "title",
    "sql",
    "alias",
    "database",
    "dsn",
    "columns",
    "limit",
    "statement_timeout",
)
# What a figure's format may show of a check: {value} (the default), {message}, {status}.
CHECK_FIELDS = ("value", "message", "status")
MAX_ROWS = 100
DEFAULT_ROWS = 10
DEFAULT_STATEMENT_TIMEOUT = 5.0
MAX_STATEMENT_TIMEOUT = 30.0
# A cell's text is cut to this many characters (values come from the monitored system).
CELL_CHARS = 60
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def parse_template(template: str, own_check: str | None) -> list[str | tuple[str, str, str]]:
    """A figure's format as literal text and (check name, field, format spec) references.

    ``{value}``, ``{message}``, ``{status}`` are the figure's own ``check``; ``{NAME}`` or
    ``{NAME.message}`` another check's; ``{…:,.0f}`` formats a value. Raises ValueError.
    """
    parts: list[str | tuple[str, str, str]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(template[position : match.start()])
        position = match.end()
        reference, _, spec = match.group(1).partition(":")
        reference = reference.strip()
        if reference in CHECK_FIELDS:
            if not own_check:
                raise ValueError(f"{{{reference}}} needs the figure's check (add check: NAME)")
            name, field = own_check, reference
        else:
            name, dot, field = reference.rpartition(".")
            if not dot or field not in CHECK_FIELDS:
                name, field = reference, "value"
        if not name:
            raise ValueError("{} names no check; use {value} or {CHECK-NAME}")
        if spec:
            if field != "value":
                raise ValueError(f"{{{match.group(1)}}}: only a value takes a format spec")
            try:
                format(1234.5, spec)
            except ValueError:
                raise ValueError(
                    f"{{{match.group(1)}}}: {spec!r} is not a number format such as ,.0f or .1f"
                ) from None
        parts.append((name, field, spec))
    parts.append(template[position:])
    if "{" in "".join(p for p in parts if isinstance(p, str)) or "}" in "".join(
        p for p in parts if isinstance(p, str)
    ):
        raise ValueError("unbalanced { or } (placeholders look like {value} or {CHECK-NAME})")
    return [p for p in parts if p != ""]


def _check_kinds(document: dict[str, Any]) -> dict[str, str]:
    """Check name -> kind, of the checks in the file and those already in the database."""
    kinds = dict(Check.objects.values_list("name", "kind"))
    for entry in document.get("checks", []) or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            kinds[entry["name"]] = str(entry.get("kind", ""))
    return kinds


def _unknown_fields(raw: dict, allowed: Iterable[str], where: str, problems: list[str]) -> None:
    for key in raw:
        if key not in allowed:
            problems.append(f"{where}.{key}: unknown field; allowed: {', '.join(allowed)}")


def _validate_figures(
    raw: Any, where: str, kinds: dict[str, str], problems: list[str]
) -> list[dict[str, str]]:
    if not isinstance(raw, list):
        problems.append(f"{where}: must be a list of {{label, check, format}}")
        return []
    figures = []
    for index, entry in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: must be a mapping {{label, check, format}}")
            continue
        _unknown_fields(entry, FIGURE_FIELDS, at, problems)
        label, check, template = entry.get("label"), entry.get("check"), entry.get("format")
        if not isinstance(label, str) or not label.strip() or len(label) > 100:
            problems.append(f"{at}.label: is required (text up to 100 characters)")
        if check is not None and (not isinstance(check, str) or check not in kinds):
            problems.append(f"{at}.check: no check named {check!r} in this file or the database")
            check = None
        if template is None:
            if check is None and "check" not in entry:
                problems.append(f"{at}: give check (its value is shown) or format, or both")
            template = "{value}"
        if not isinstance(template, str) or len(template) > 200:
            problems.append(f"{at}.format: must be text up to 200 characters")
            continue
        try:
            parts = parse_template(template, check)
        except ValueError as exc:
            problems.append(f"{at}.format: {exc}")
            continue
        for part in parts:
            if isinstance(part, tuple) and part[0] not in kinds:
                problems.append(
                    f"{at}.format: {{{part[0]}}}: no check named {part[0]!r} in this file or "
                    "the database"
                )
        figures.append(
            {"label": str(label), "check": check or "", "format": template},
        )
    return figures


def _validate_rows(raw: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping {{title, sql, columns, limit}}")
        return None
    _unknown_fields(raw, ROWS_FIELDS, where, problems)
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 100:
        problems.append(f"{where}.title: is required (text up to 100 characters)")
    sql = raw.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        problems.append(f"{where}.sql: is required: one read-only SELECT query")
        sql = ""
    else:
        refusal = write_refusal(sql)
        if refusal:
            problems.append(f"{where}.sql: {refusal}")
    errors: dict[str, str] = {}
    target = accept_database_key(
        {k: raw[k] for k in ("alias", "database", "dsn") if k in raw}, errors
    )
    validate_database_target(target, errors)
    for key, text in errors.items():
        problems.append(f"{where}.{key.removeprefix('config.')}: {text}")
    columns = raw.get("columns", [])
    if not isinstance(columns, list) or not all(
        isinstance(c, str) and 0 < len(c) <= 40 for c in columns
    ):
        problems.append(f"{where}.columns: must be a list of column headings (up to 40 characters)")
        columns = []
    limit = raw.get("limit", DEFAULT_ROWS)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ROWS:
        problems.append(f"{where}.limit: must be a whole number from 1 to {MAX_ROWS}")
        limit = DEFAULT_ROWS
    timeout = DEFAULT_STATEMENT_TIMEOUT
    if "statement_timeout" in raw:
        try:
            timeout = parse_duration(raw["statement_timeout"])
        except ValueError as exc:
            problems.append(f"{where}.statement_timeout: {exc}")
        else:
            if not 0 < timeout <= MAX_STATEMENT_TIMEOUT:
                problems.append(
                    f"{where}.statement_timeout: must be more than 0 and at most "
                    f"{MAX_STATEMENT_TIMEOUT:g}s"
                )
                timeout = DEFAULT_STATEMENT_TIMEOUT
    return {
        "title": str(title or ""),
        "sql": sql,
        "target": target,
        "columns": columns,
        "limit": limit,
        "statement_timeout": timeout,
    }


def validate_layout(raw: Any, document: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The check file's ``report:`` section; every problem names its field."""
    if not isinstance(raw, dict):
        problems.append(
            "report: must be a mapping with processes, database, recent_rows and resources"
        )
        return {}
    _unknown_fields(raw, LAYOUT_FIELDS, "report", problems)
    kinds = _check_kinds(document)
    layout: dict[str, Any] = {}
    if "processes" in raw:
        names = raw["processes"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append("report.processes: must be a list of process check names")
        else:
            for index, name in enumerate(names):
                if name not in kinds:
                    problems.append(
                        f"report.processes[{index}]: no check named {name!r} in this file "
                        "or the database"
                    )
                elif kinds[name] != "process":
                    problems.append(
                        f"report.processes[{index}]: {name!r} is a {kinds[name]} check, "
                        "not a process check"
                    )
            layout["processes"] = names
    for section, allowed in (("database", DATABASE_FIELDS), ("resources", RESOURCES_FIELDS)):
        if section not in raw:
            continue
        value = raw[section]
        where = f"report.{section}"
        if not isinstance(value, dict):
            problems.append(f"{where}: must be a mapping with {', '.join(allowed)}")
            continue
        _unknown_fields(value, allowed, where, problems)
        parsed: dict[str, Any] = {
            "figures": _validate_figures(
                value.get("figures", []), f"{where}.figures", kinds, problems
            )
        }
        if "connection" in value:
            connection = value["connection"]
            if not isinstance(connection, str) or connection not in kinds:
                problems.append(
                    f"{where}.connection: no check named {connection!r} in this file or "
                    "the database"
                )
            parsed["connection"] = connection if isinstance(connection, str) else ""
        layout[section] = parsed
    if "recent_rows" in raw:
        tables = raw["recent_rows"]
        if not isinstance(tables, list):
            problems.append("report.recent_rows: must be a list of {title, sql, columns, limit}")
        else:
            layout["recent_rows"] = [
                parsed
                for index, entry in enumerate(tables)
                if (parsed := _validate_rows(entry, f"report.recent_rows[{index}]", problems))
            ]
    return layout


def apply_layout(layout: dict[str, Any], prune: bool) -> dict[str, int]:
    return {"updated": 1} if ReportLayout.store(layout) else {"unchanged": 1}


# --- values ----------------------------------------------------------------------------------


def _number(value: float | None, spec: str = "") -> str:
    if value is None:
        return "—"
    if spec:
        return format(value, spec)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def clean_text(value: Any, limit: int = CELL_CHARS) -> str:
    """Text from a monitored system, safe on one line of the text report: control characters
    and line breaks become spaces, long values are cut."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(moment: datetime | None) -> str:
    """A readable UTC time, to the second (no microseconds, no offset)."""
    if moment is None:
        return "never"
    if timezone.is_aware(moment):
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _gb(value: float) -> str:
    return f"{value / 1024**3:.1f}G"


def cell(value: Any) -> str | bool | None:
    """A recent-rows cell as shown: booleans stay booleans (a badge on the page, ✅ / ❌ in
    the text), times in UTC to the second, numbers plain, text on one line and cut."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        return _when(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, bytes | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, str) and _ISO_TIME.match(value):
        # SQLite hands timestamps over as text: shown like any other time, to the second.
        try:
            return _when(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    return clean_text(value)


# --- sections --------------------------------------------------------------------------------


def _latest_runs(check_ids: list[int]) -> dict[int, CheckRun]:
    """The latest run of each check, in one query."""
    return {check_id: runs[0] for check_id, runs in latest_runs(check_ids).items()}


def _process_state(check: Check, run: CheckRun | None) -> str:
    """The seed's process status words: online, offline, errored; degraded when fewer run
    than the check wants."""
    if not check.enabled:
        return "paused"
    if run is None:
        return "not checked yet"
    count = run.details.get("count") if isinstance(run.details, dict) else None
    if count is None:
        return "errored"
    wanted = int(check.config.get("min_count", 1) or 1)
    if count == 0:
        return "offline"
    if count < wanted:
        return f"degraded ({count} of {wanted})"
    return "online"


def _process_status(check: Check, state: str) -> str:
    """The badge and icon of a process block follow its status word, so "errored" is never
    drawn green while the check's own status waits out its debounce."""
    if state == "online":
        return check.status
    if state.startswith("degraded"):
        return CheckStatus.WARNING
    if state in ("offline", "errored"):
        return CheckStatus.CRITICAL
    return CheckStatus.UNKNOWN


def process_section(layout: dict[str, Any], now: datetime) -> dict[str, Any]:
    names = layout.get("processes")
    if names:
        found = {c.name: c for c in Check.objects.filter(name__in=names, kind="process")}
        checks = [found[name] for name in names if name in found]
    else:
        checks = list(Check.objects.filter(enabled=True, kind="process").order_by("name"))
    runs = _latest_runs([c.pk for c in checks])
    entries = []
    for check in checks:
        run = runs.get(check.pk)
        details = run.details if run and isinstance(run.details, dict) else {}
        uptime = details.get("uptime_seconds")
        state = _process_state(check, run)
        entries.append(
            {
                "name": check.name,
                "check_id": check.pk,
                "status": _process_status(check, state),
                "state": state,
                "uptime": format_duration(uptime) if uptime is not None else "—",
                "restarts": details.get("restarts_last_hour", "—"),
                "memory": f"{details['rss_mb']:.0f}MB" if "rss_mb" in details else "—",
                "cpu": f"{details['cpu_pct']:.0f}%" if "cpu_pct" in details else "—",
                "message": "" if check.status == CheckStatus.OK else check.last_message,
            }
        )
    queue = read_queue(now)
    redis = read_redis()
    clusters = queue.clusters_alive
    queue_ok = queue.reachable and (clusters is None or clusters > 0)
    console = {
        "name": f"task queue ({queue.broker} broker)",
        "status": CheckStatus.OK if queue_ok else CheckStatus.CRITICAL,
        "state": "online" if queue_ok else ("no workers" if queue.reachable else "unreachable"),
        "workers": "unknown" if clusters is None else clusters,
        "queued": "unknown" if queue.queued is None else queue.queued,
        "succeeded": queue.succeeded_last_hour,
        "failed": queue.failed_last_hour,
        "redis": (
            ""
            if not redis.configured
            else f"{(redis.used_memory or 0) / MB:.0f}MB used"
            if redis.up
            else f"unreachable: {redis.error}"
        ),
        "redis_status": (
            "" if not redis.configured else CheckStatus.OK if redis.up else CheckStatus.CRITICAL
        ),
    }
    statuses = [e["status"] for e in entries if e["state"] != "paused"] + [console["status"]]
    if console["redis_status"]:
        statuses.append(console["redis_status"])
    return {
        "kind": "processes",
        "title": "PROCESS STATUS",
        "status": worst(*statuses),
        "entries": entries,
        "console": console,
        "note": "" if entries else "no process checks configured",
    }


def _figure(spec: dict[str, str], checks: dict[str, Check]) -> dict[str, str]:
    try:
        parts = parse_template(spec["format"], spec.get("check") or None)
    except ValueError as exc:  # a layout stored before a rule changed
        return {"label": spec["label"], "text": f"invalid format: {exc}", "status": "unknown"}
    text, statuses = [], []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
            continue
        name, field, number_spec = part
        check = checks.get(name)
        if check is None:
            text.append(f"(no check {name})")
            statuses.append(CheckStatus.UNKNOWN)
            continue
        statuses.append(check.status)
        if field == "message":
            text.append(clean_text(check.last_message, 200))
        elif field == "status":
            text.append(str(check.status))
        else:
            try:
                text.append(_number(check.last_value, number_spec))
            except ValueError:
                text.append(_number(check.last_value))
    return {
        "label": spec["label"],
        "text": "".join(text),
        "status": worst(*statuses) if statuses else CheckStatus.OK,
    }


def _referenced_checks(layout: dict[str, Any]) -> dict[str, Check]:
    names = set()
    for section in ("database", "resources"):
        part = layout.get(section) or {}
        if part.get("connection"):
            names.add(part["connection"])
        for spec in part.get("figures", []):
            if spec.get("check"):
                names.add(spec["check"])
            try:
                parts = parse_template(spec["format"], spec.get("check") or None)
            except ValueError:
                continue
            names.update(p[0] for p in parts if isinstance(p, tuple))
    return {c.name: c for c in Check.objects.filter(name__in=names)} if names else {}


def database_section(layout: dict[str, Any], checks: dict[str, Check]) -> dict[str, Any]:
    part = layout.get("database") or {}
    lines: list[dict[str, str]] = []
    connection = part.get("connection")
    if connection:
        check = checks.get(connection)
        if check is None:
            lines.append({"text": f"No check named {connection}", "status": "unknown"})
        elif check.status == CheckStatus.OK:
            lines.append({"text": "Connected", "status": CheckStatus.OK})
        elif check.last_run_at is None:
            lines.append({"text": "Not checked yet", "status": CheckStatus.UNKNOWN})
        else:
            lines.append(
                {
                    "text": f"Not connected: {clean_text(check.last_message, 200)}",
                    "status": check.status,
                }
            )
    else:
        db = read_database()
        lines.append(
            {"text": f"Connected ({db.vendor}, SELECT 1 in {db.latency_ms} ms)", "status": "ok"}
            if db.up
            else {"text": f"Unreachable: {db.error}", "status": CheckStatus.CRITICAL}
        )
    figures = [_figure(spec, checks) for spec in part.get("figures", [])]
    if not part.get("figures"):
        # Without a layout: the database checks, one line each.
        for check in Check.objects.filter(enabled=True, kind="database").order_by("name"):
            figures.append(
                {
                    "label": check.name,
                    "text": clean_text(check.last_message, 200),
                    "status": check.status,
                }
            )
    return {
        "kind": "database",
        "title": "DATABASE HEALTH",
        "status": worst(*(line["status"] for line in lines + figures)),
        "lines": lines,
        "figures": figures,
    }


def _wrapped(sql: str, limit: int) -> str:
    """The query under an outer LIMIT, so the server stops after ``limit`` rows (its own ORDER
    BY keeps the subquery sorted); the line break ends a trailing ``--`` comment."""
    body = sql.strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return f"SELECT * FROM (\n{body}\n) AS report_rows LIMIT {int(limit)}"


def rows_section(spec: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = {
        "kind": "rows",
        "title": spec["title"],
        "status": CheckStatus.OK,
        "columns": list(spec["columns"]),
        "rows": [],
        "error": "",
    }
    try:
        names, rows = fetch_rows(
            spec["target"],
            _wrapped(spec["sql"], spec["limit"]),
            timeout=spec["statement_timeout"],
            limit=spec["limit"],
        )
    except SqlTimeout as exc:
        section.update(status=CheckStatus.CRITICAL, error=f"query timed out: {exc}")
        return section
    except SqlTargetError as exc:
        section.update(status=CheckStatus.CRITICAL, error=f"query failed: {exc}")
        return section
    if not section["columns"]:
        section["columns"] = [clean_text(n, 40) for n in names]
    elif len(section["columns"]) != len(names):
        section["error"] = (
            f"columns names {len(section['columns'])} headings but the query returns "
            f"{len(names)} columns; showing the query's column names"
        )
        section["status"] = CheckStatus.WARNING
        section["columns"] = [clean_text(n, 40) for n in names]
    section["rows"] = [[cell(value) for value in row] for row in rows]
    return section


def data_checks_section() -> dict[str, Any]:
    """Without configured recent-rows queries: the freshness and value checks as one table."""
    checks = list(Check.objects.filter(enabled=True, kind__in=DATA_KINDS).order_by("name"))
    return {
        "kind": "rows",
        "title": "RECENT DATA",
        "status": worst(*(c.status for c in checks)) if checks else CheckStatus.OK,
        "columns": ["Check", "Kind", "Value", "Last run", "Status"],
        "rows": [
            [c.name, c.kind, _number(c.last_value), _when(c.last_run_at), c.status] for c in checks
        ],
        "error": "",
        "note": "" if checks else "no freshness or sql_value checks configured",
        "status_column": 4,
    }


def alerts_section(overall_checks: dict[str, int]) -> dict[str, Any]:
    alerts = [
        {
            "id": alert.pk,
            "severity": str(alert.severity),
            "status": str(alert.status),
            "title": clean_text(alert.title, 200),
            "since": f"{_when(alert.opened_at)} UTC" if alert.opened_at else "unknown",
        }
        for alert in Alert.objects.filter(status__in=ACTIVE_STATUSES).order_by("-opened_at")[:20]
    ]
    failing = {s: n for s, n in overall_checks.items() if SEVERITY_RANK.get(CheckStatus(s), 0) >= 2}
    # An INFO alert is recorded for reference: it does not colour the section.
    status = worst(
        *(a["severity"] for a in alerts if a["severity"] in CheckStatus.values),
        *([] if alerts else failing),
    )
    return {
        "kind": "alerts",
        "title": "ACTIVE ALERTS",
        "status": status,
        "alerts": alerts,
        "failing": ", ".join(f"{n} {s}" for s, n in sorted(failing.items())),
    }


def resources_section(layout: dict[str, Any], checks: dict[str, Check]) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage("/")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    lines = [
        {
            "label": "Memory",
            "text": f"{_gb(memory.total - memory.available)} used | {_gb(memory.available)} free",
        },
        {"label": "CPU Load (1/5/15 min)", "text": ", ".join(f"{v:.2f}" for v in load)},
        {"label": "Disk /", "text": f"{disk.percent:.0f}% used | {_gb(disk.free)} free"},
    ]
    figures = [_figure(spec, checks) for spec in (layout.get("resources") or {}).get("figures", [])]
    return {
        "kind": "resources",
        "title": "SYSTEM RESOURCES",
        "status": worst(*(f["status"] for f in figures)) if figures else CheckStatus.OK,
        "lines": lines,
        "figures": figures,
    }


def report_title() -> str:
    return clean_text(settings.REPORT_TITLE, 120) or DEFAULT_TITLE


def timestamp(now: datetime) -> str:
    """The seed's timestamp: ISO 8601 in UTC with milliseconds and a Z."""
    utc = now.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def build_sections(
    now: datetime, checks_by_status: dict[str, int], layout: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every section of the report, in the seed's order."""
    layout = ReportLayout.current() if layout is None else layout
    checks = _referenced_checks(layout)
    sections = [process_section(layout, now), database_section(layout, checks)]
    tables = layout.get("recent_rows") or []
    sections += [rows_section(spec) for spec in tables] if tables else [data_checks_section()]
    sections.append(alerts_section(checks_by_status))
    sections.append(resources_section(layout, checks))
    return sections


def overall_status(overall: str, sections: list[dict[str, Any]]) -> str:
    """The overall state (worst of the checks and the open alerts), critical as well when the
    console's own database, Redis or task queue is down."""
    statuses = [overall]
    for section in sections:
        if section["kind"] == "processes":
            statuses.append(section["console"]["status"])
            statuses.append(section["console"]["redis_status"] or CheckStatus.OK)
        if section["kind"] == "database":
            statuses.extend(line["status"] for line in section["lines"])
    return worst(*statuses)


# --- the text form ---------------------------------------------------------------------------


def _display_width(text: str) -> int:
    """Terminal columns: wide characters (emoji, CJK) take two."""
    return sum(
        0
        if unicodedata.combining(ch) or ch == "\ufe0f"
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


def _cell_text(value: str | bool | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✅" if value else "❌"
    return value


def _heading(section: dict[str, Any], title: str | None = None) -> list[str]:
    return [f"{SECTION_ICON[section['kind']]} {title or section['title']}", LIGHT]


def _figure_line(figure: dict[str, str]) -> str:
    # The seed shows figures bare; one that is not OK gets its icon so it is not missed.
    status = figure.get("status", CheckStatus.OK)
    prefix = "" if status == CheckStatus.OK else f"{ICON.get(status, '❔')} "
    return f"{prefix}{figure['label']}: {figure['text']}"


def _render_processes(section: dict[str, Any]) -> list[str]:
    lines = _heading(section)
    for entry in section["entries"]:
        lines.append(f"{ICON.get(entry['status'], '❔')} {entry['name']}")
        lines.append(
            f"   Status: {entry['state']} | Uptime: {entry['uptime']} | "
            f"Restarts: {entry['restarts']}"
        )
        lines.append(f"   Memory: {entry['memory']} | CPU: {entry['cpu']}")
        if entry["message"]:
            lines.append(f"   {clean_text(entry['message'], 200)}")
        lines.append("")
    if section["note"]:
        lines += [f"   ({section['note']})", ""]
    console = section["console"]
    lines.append(f"{ICON[console['status']]} {console['name']}")
    lines.append(
        f"   Status: {console['state']} | Workers: {console['workers']} | "
        f"Queued: {console['queued']}"
    )
    lines.append(
        f"   Last hour: {console['succeeded']} done | {console['failed']} failed"
        + (f" | Redis: {console['redis']}" if console["redis"] else "")
    )
    return lines


def _render_database(section: dict[str, Any]) -> list[str]:
    lines = _heading(section)
    for line in section["lines"]:
        lines.append(f"{ICON.get(line['status'], '❔')} {line['text']}")
    lines += [_figure_line(figure) for figure in section["figures"]]
    return lines


def _render_rows(section: dict[str, Any]) -> list[str]:
    lines = _heading(section)
    if section["error"] and not section["rows"]:
        return [*lines, f"❌ {section['error']}"]
    if section["error"]:
        lines.append(f"⚠️  {section['error']}")
    columns = section["columns"]
    rows = [[_cell_text(value) for value in row] for row in section["rows"]]
    widths = [
        max([_display_width(name)] + [_display_width(row[i]) for row in rows if i < len(row)])
        for i, name in enumerate(columns)
    ]
    lines.append("  ".join(_pad(name, w) for name, w in zip(columns, widths, strict=True)).rstrip())
    lines.append(LIGHT)
    for row in rows:
        lines.append(
            "  ".join(_pad(value, w) for value, w in zip(row, widths, strict=False)).rstrip()
        )
    if not rows:
        lines.append(f"({section.get('note') or 'no rows'})")
    return lines


def _render_alerts(section: dict[str, Any]) -> list[str]:
    alerts = section["alerts"]
    if not alerts:
        if section["failing"]:
            return [f"⚠️  No alerts open; failing checks: {section['failing']}"]
        return ["✅ No alerts"]
    lines = _heading(section, f"ACTIVE ALERTS ({len(alerts)})")
    for alert in alerts:
        lines.append(
            f"{ICON.get(alert['severity'], 'ℹ️ ')} [{alert['severity'].upper()}] {alert['title']} "
            f"({alert['status']}, since {alert['since']})"
        )
    return lines


def _render_resources(section: dict[str, Any]) -> list[str]:
    lines = _heading(section)
    lines += [f"{line['label']}: {line['text']}" for line in section["lines"]]
    lines += [_figure_line(figure) for figure in section["figures"]]
    return lines


RENDERERS = {
    "processes": _render_processes,
    "database": _render_database,
    "rows": _render_rows,
    "alerts": _render_alerts,
    "resources": _render_resources,
}


def render_text(title: str, stamp: str, sections: list[dict[str, Any]]) -> str:
    lines = [HEAVY, title, f"Timestamp: {stamp}", HEAVY, ""]
    for section in sections:
        lines += RENDERERS[section["kind"]](section)
        lines.append("")
    lines[-1] = HEAVY
    return "\n".join(line.rstrip() for line in lines) + "\n"


# --- saving and mailing ----------------------------------------------------------------------


def build_report(now: datetime | None = None) -> Report:
    now = now or timezone.now()
    overall = overall_state()
    sections = build_sections(now, overall.checks_by_status)
    status = overall_status(overall.status, sections)
    title = report_title()
    stamp = timestamp(now)
    return Report.objects.create(
        created_at=now,
        title=f"{title.title()} {now:%Y-%m-%d %H:%M} UTC: {status}",
        overall_status=status,
        text=render_text(title, stamp, sections),
        sections=sections,
        data={"heading": title, "timestamp": stamp},
    )


def email_report(report: Report) -> int:
    """Mails the report to active staff with an address; returns how many were sent."""
    # Imported here: the auth models and the mail backend are only needed when mailing.
    from django.contrib.auth import get_user_model
    from django.core.mail import send_mail

    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return 0
    send_mail(f"[opsconsole] {report.title}", report.text, None, recipients)
    return len(recipients)


def scheduled_report() -> int:
    """The 30-minute job: save a report (and mail it when OPSREPORT_EMAIL is on)."""
    with job_context(job_name="opsreport"):
        report = build_report()
        sent = email_report(report) if settings.OPSREPORT_EMAIL else 0
        logger.info(
            "health report saved: %s",
            report.title,
            extra={"report_id": report.pk, "mailed_to": sent},
        )
        return report.pk
