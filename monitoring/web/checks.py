"""``/checks/`` and ``/checks/<id>/``: state, history chart, runs, run now and mute."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_POST

from monitoring.alerts.delivery import report_test, test_channels
from monitoring.checks.runner import run_checks
from monitoring.history.strip import compact_strips, render_strip, status_strips
from monitoring.history.uptime import Uptime, uptimes
from monitoring.kinds import ConfigError, mask_secrets
from monitoring.kinds.heartbeat import DEFAULT_GRACE, DEFAULT_PERIOD
from monitoring.models import (
    AlertSeverity,
    Check,
    CheckRun,
    CheckStatus,
    MaintenanceWindow,
    WindowSource,
)
from monitoring.observability.activity import words
from monitoring.web.chart import CHART_RANGES, DEFAULT_RANGE, check_chart
from monitoring.web.mutes import mute_end, muted_until
from opsconsole.env import format_duration
from opsconsole.page_access import CHECK_CHANGE, staff_action, staff_page
from opsconsole.paging import latest_first

RUNS_PER_PAGE = 50
# The durations the page offers; anything else is refused (a mute is a person's decision,
# bounded so that a forgotten one ends by itself).
MUTE_CHOICES = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


LIST_FIELDS = (
    "name",
    "kind",
    "component",
    "status",
    "enabled",
    "last_value",
    "last_message",
    "last_run_at",
)


@require_GET
@staff_page
def check_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    # Only what the rows show: the configs and kind state of 500 checks are not read. The mute
    # comes with each check (a subquery), not as a second query over 500 ids.
    checks = (
        Check.objects.only(*LIST_FIELDS)
        .annotate(muted_until=mute_end(now))
        .order_by("component", "name")
    )
    filters = {}
    for key in ("kind", "status", "component"):
        value = request.GET.get(key)
        if value:
            filters[key] = value
    checks = list(checks.filter(**filters))
    # One query each for every row: uptimes and strips (hourly rollups). The strips are the
    # compact drawing (one path per status), a quarter of the bytes of the check page's.
    ups = uptimes([check.pk for check in checks], now)
    strips = compact_strips(checks, now)
    rows = [
        CheckRow(
            check=check,
            uptime=ups.get(check.pk),
            strip=strips[check.pk],
            muted_until=check.muted_until,
        )
        for check in checks
    ]
    return render(
        request,
        "pages/check_list.html",
        {
            "rows": rows,
            "filters": filters,
            "statuses": CheckStatus.choices,
        },
    )


UPTIME_WINDOWS = (("d1", "24 h"), ("d7", "7 d"), ("d30", "30 d"))


def uptime_text(percent: float | None) -> str:
    """``99.95 %``; rounded down, so that a check down for a minute never reads 100 %."""
    if percent is None:
        return "—"
    if percent >= 100:
        return "100 %"
    # Rounded to 4 places first: the database's time arithmetic (SQLite's julianday) leaves
    # 49.9999997 where 50 was meant, which rounding down alone would show as 49.99.
    shown = min(math.floor(round(percent, 4) * 100) / 100, 99.99)
    return f"{shown:.2f} %"


def uptime_cells(uptime: Uptime | None) -> list[tuple[str, str]]:
    """(window, text) for 24 h, 7 d and 30 d."""
    return [
        (label, uptime_text(getattr(uptime, key) if uptime else None))
        for key, label in UPTIME_WINDOWS
    ]


@dataclass(frozen=True)
class CheckRow:
    check: Check
    uptime: Uptime | None
    strip: SafeString
    muted_until: datetime | None

    @property
    def uptimes(self) -> list[tuple[str, str]]:
        return uptime_cells(self.uptime)


def _thresholds(check: Check) -> tuple[float | None, float | None, str, str]:
    try:
        warn, crit, direction = check.thresholds()
        unit = check.kind_impl.unit_for(check.config)
    except ConfigError:  # a check of a kind no longer installed still shows its history
        warn, crit, direction, unit = check.warn, check.crit, check.direction or "above", ""
    return warn, crit, direction, unit


def _pushed(check: Check) -> bool:
    try:
        return check.kind_impl.pushed
    except ConfigError:  # a kind no longer installed: nothing to run, nothing pushed
        return False


# --- what a check watches, by kind -----------------------------------------------------------

# kind -> (title of the card, [(config key, label)]) in the order a reader wants them. Keys a
# config has beyond these are shown after them, so nothing configured is ever hidden.
KIND_FIELDS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "http": (
        "Endpoint",
        [
            ("url", "URL"),
            ("method", "Method"),
            ("expect_status", "Expected status"),
            ("contains", "Body must contain"),
            ("headers", "Headers"),
            ("verify_tls", "Verify TLS"),
        ],
    ),
    "redis": ("Redis", [("url", "URL"), ("metric", "Measures"), ("prefix", "Key prefix")]),
    "database": ("Database", [("alias", "Database alias"), ("dsn", "DSN")]),
    "system": (
        "Host",
        [("metric", "Measures"), ("path", "Disk path"), ("sample_seconds", "CPU sample")],
    ),
    "process": (
        "Processes",
        [
            ("name", "Process name"),
            ("cmdline", "Command line matches"),
            ("scope", "Scope"),
            ("metric", "Measures"),
            ("min_count", "At least running"),
            ("restarts_warn", "Restarts per hour, warning above"),
            ("restarts_crit", "Restarts per hour, critical above"),
        ],
    ),
    "queue": ("Task queue", [("queue", "Queue"), ("min_clusters", "Clusters expected")]),
    "freshness": (
        "Data",
        [
            ("sql", "Query"),
            ("model", "Model"),
            ("field", "Timestamp field"),
            ("alias", "Database alias"),
            ("dsn", "DSN"),
            ("warn_after", "Warning after"),
            ("crit_after", "Critical after"),
            ("statement_timeout", "Query timeout"),
        ],
    ),
    "sql_value": (
        "Data",
        [
            ("sql", "Query"),
            ("table", "Rows counted in table"),
            ("alias", "Database alias"),
            ("dsn", "DSN"),
            ("since", "{since} is"),
            ("null_as", "NULL counts as"),
            ("unit", "Unit"),
            ("statement_timeout", "Query timeout"),
        ],
    ),
    "backlog": ("Backlog", [("metric", "Measures"), ("source", "Source")]),
    "batches": (
        "Batches",
        [("metric", "Measures"), ("stuck_after", "Stuck after"), ("window", "Window")],
    ),
}
# Config values that are durations in seconds, shown as 5m, 1h 30m…
DURATION_KEYS = {
    "period",
    "grace",
    "min_duration",
    "max_duration",
    "warn_after",
    "crit_after",
    "statement_timeout",
    "since",
    "stuck_after",
    "window",
    "oldest_warn",
    "oldest_crit",
    "sample_seconds",
}
# Shown as a block of code rather than a line.
CODE_KEYS = {"sql", "cmdline"}
# Shown elsewhere on a heartbeat page (the schedule card), not among the facts.
HEARTBEAT_KEYS = {"period", "grace", "min_duration", "max_duration"}


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    code: bool = False


def _show(key: str, value: Any) -> str:
    if key in DURATION_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
        return format_duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(str(k), v)}" for k, v in value.items())
    return str(value)


def kind_facts(check: Check) -> tuple[str, list[Fact]]:
    """The card title and the settings of what this check watches, in the operator's words,
    from its config with secrets masked. Only the keys the config has are shown."""
    config = mask_secrets(check.config or {})
    if not isinstance(config, dict):
        return "Settings", []
    title, fields = KIND_FIELDS.get(check.kind, ("Settings", []))
    known = dict(fields)
    skip = HEARTBEAT_KEYS if _pushed(check) else set()
    facts = []
    for key in [key for key, _ in fields] + sorted(k for k in config if k not in known):
        if key not in config or key in skip or config[key] in (None, "", [], {}):
            continue
        label = known.get(key) or words(key)
        facts.append(Fact(label, _show(key, config[key]), code=key in CODE_KEYS))
    return title, facts


# --- heartbeats --------------------------------------------------------------------------------

LAST_PINGS = 10
BODY_PREVIEW_CHARS = 300


def ping_url(check: Check) -> str:
    """The absolute ping URL, from SITE_URL: the address jobs reach, which need not be the one
    this page was opened at (the API and the admin give the same)."""
    return f"{settings.SITE_URL}{check.ping_path()}"


def cron_schedule(period: float) -> str:
    """A crontab schedule for a period, for the example; a period cron cannot say is shown
    with the daily form, which the reader adapts."""
    minutes = int(period // 60)
    if period % 60 == 0 and 0 < minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours = int(period // 3600)
    if period % 3600 == 0 and 0 < hours < 24 and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if period == 7 * 86400:
        return "30 2 * * 1"
    return "30 2 * * *"


@dataclass(frozen=True)
class Ping:
    at: datetime
    event: str
    status: str
    exit_code: int | None
    duration_seconds: float | None
    remote_addr: str
    body: str
    preview: str
    body_truncated: bool


def last_pings(check: Check, limit: int = LAST_PINGS) -> list[Ping]:
    """The newest pings (runs a ping recorded, not the lateness runs) with their bodies."""
    # checkrun_check_latest_idx walks this check's runs newest first; pings carry an event.
    rows = (
        CheckRun.objects.filter(check_obj=check, details__has_key="event")
        .order_by("-created_at", "-id")
        .values_list("created_at", "status", "details")[:limit]
    )
    pings = []
    for at, status, details in rows:
        details = details if isinstance(details, dict) else {}
        body = str(details.get("body") or "")
        pings.append(
            Ping(
                at=at,
                event=str(details.get("event", "")),
                status=status,
                exit_code=details.get("exit_code"),
                duration_seconds=details.get("duration_seconds"),
                remote_addr=str(details.get("remote_addr", "")),
                body=body,
                preview=body[:BODY_PREVIEW_CHARS],
                body_truncated=bool(details.get("body_truncated")),
            )
        )
    return pings


def heartbeat_context(check: Check, now: datetime) -> dict[str, Any]:
    config = check.config or {}
    state = check.state or {}
    period = float(config.get("period", DEFAULT_PERIOD))
    grace = float(config.get("grace", DEFAULT_GRACE))
    next_due = check.kind_impl.next_due(check)
    started = state.get("started_at")
    url = ping_url(check)
    retry = "curl -fsS -m 10 --retry 5 -o /dev/null"
    schedule = cron_schedule(period)
    return {
        "ping_url": url,
        "schedule": f"every {format_duration(period)}, grace {format_duration(grace)}",
        "job_duration": ", ".join(
            f"{word} {format_duration(config[key])}"
            for word, key in (("at least", "min_duration"), ("at most", "max_duration"))
            if config.get(key)
        ),
        "last_ping_at": datetime.fromisoformat(state["last_ping_at"])
        if state.get("last_ping_at")
        else None,
        "running_since": datetime.fromisoformat(started) if started else None,
        "next_due": next_due,
        "late_after": next_due + timedelta(seconds=grace) if next_due else None,
        "overdue": bool(next_due and now > next_due),
        "cron_examples": [
            (
                "Ping when the job succeeds",
                f"{schedule} /path/to/job.sh && curl -fsS -m 10 --retry 5 {url}",
            ),
            (
                "Signal the start, then the job's exit code (0 is success; anything else fails)",
                f"{schedule} {retry} {url}/start; /path/to/job.sh; {retry} {url}/$?",
            ),
            (
                "Report a failure explicitly",
                f"{schedule} /path/to/job.sh || {retry} {url}/fail",
            ),
            (
                "Send the job's output with the ping (the first 10 KB are kept)",
                f"{schedule} /path/to/job.sh 2>&1 | curl -fsS -m 10 --retry 5 --data-binary @- {url}",
            ),
        ],
        "pings": last_pings(check),
    }


# --- the check page ----------------------------------------------------------------------------


@require_GET
@staff_page
def check_detail(request: HttpRequest, check_id: int) -> HttpResponse:
    check = get_object_or_404(Check.objects.select_related("depends_on"), pk=check_id)
    warn, crit, direction, unit = _thresholds(check)
    now = timezone.now()
    pushed = _pushed(check)
    windows = MaintenanceWindow.objects.filter(check_obj=check).active(now)
    # A person's mute (Unmute ends it) and a check file's window are shown apart.
    page_mute = windows.page_mutes().order_by("-ends_at").first()
    file_window = windows.from_file().order_by("-ends_at").first()
    # Component and global windows mute this check too.
    until = muted_until([check], now).get(check.pk)
    # An unknown range is the default, not an error: the links are the only way to set it.
    chart_range = request.GET.get("range")
    if chart_range not in CHART_RANGES:
        chart_range = DEFAULT_RANGE
    runs = latest_first(
        CheckRun.objects.filter(check_obj=check).defer("details"),
        request.GET.get("before"),
        RUNS_PER_PAGE,
    )
    facts_title, facts = kind_facts(check)
    return render(
        request,
        "pages/check_detail.html",
        {
            "check": check,
            "kind_label": _kind_label(check),
            "pushed": pushed,
            "warn": warn,
            "crit": crit,
            "has_thresholds": warn is not None or crit is not None,
            "direction": direction,
            "unit": unit.strip(),
            "chart": check_chart(check, chart_range, now),
            "chart_range": chart_range,
            "chart_ranges": CHART_RANGES,
            "uptimes": uptime_cells(uptimes([check.pk], now).get(check.pk)),
            "strip": render_strip(status_strips([check], now).get(check.pk, [])),
            "runs": runs,
            "facts_title": facts_title,
            "facts": facts,
            "heartbeat": heartbeat_context(check, now) if pushed else None,
            "config_json": json.dumps(mask_secrets(check.config), indent=2, sort_keys=True),
            "muted_until": until,
            "page_mute": page_mute,
            "file_window": file_window,
            "mute_choices": list(MUTE_CHOICES),
        },
    )


def _kind_label(check: Check) -> str:
    try:
        return check.kind_impl.label or check.kind
    except ConfigError:
        return f"{check.kind} (not installed)"


@require_POST
@staff_action(CHECK_CHANGE)
def run_now(request: HttpRequest, check_id: int) -> HttpResponse:
    check = get_object_or_404(Check, pk=check_id)
    result = run_checks([check], claim=False)[0]
    run = result.run
    level = messages.SUCCESS if run and run.status == CheckStatus.OK else messages.WARNING
    messages.add_message(
        request,
        level,
        f"Ran {check.name}: {run.status if run else 'no result'} {run.message if run else ''}",
    )
    return redirect("check-detail", check_id=check.pk)


@require_POST
@staff_action(CHECK_CHANGE)
def test_notification(request: HttpRequest, check_id: int) -> HttpResponse:
    """Sends a test to the channels that would carry this check's critical alert."""
    check = get_object_or_404(Check, pk=check_id)
    severity = AlertSeverity.CRITICAL
    outcomes = test_channels(severity, request.user.get_username(), f"check {check.name}")
    for ok, text in report_test(outcomes, severity):
        (messages.success if ok else messages.error)(request, text)
    return redirect("check-detail", check_id=check.pk)


@require_POST
@staff_action(CHECK_CHANGE)
def mute(request: HttpRequest, check_id: int) -> HttpResponse:
    """Mutes the check's notifications for the chosen time (default 1 h): a page mute, which
    a check file's --prune leaves alone and only Unmute or its expiry ends."""
    check = get_object_or_404(Check, pk=check_id)
    choice = request.POST.get("duration") or "1h"
    if choice not in MUTE_CHOICES:
        messages.error(
            request, f"Mute for {choice!r}? Choose one of {', '.join(MUTE_CHOICES)}; not muted."
        )
        return redirect("check-detail", check_id=check.pk)
    now = timezone.now()
    actor = request.user.get_username()
    ends_at = now + MUTE_CHOICES[choice]
    MaintenanceWindow.objects.create(
        name=f"mute {check.name[:60]} {now:%Y%m%d-%H%M%S.%f}",
        check_obj=check,
        starts_at=now,
        ends_at=ends_at,
        reason=f"Muted from the check page by {actor}",
        source=WindowSource.PAGE,
        created_by=actor,
    )
    messages.success(
        request, f"{check.name}: notifications muted until {ends_at:%Y-%m-%d %H:%M} UTC."
    )
    return redirect("check-detail", check_id=check.pk)


@require_POST
@staff_action(CHECK_CHANGE)
def unmute(request: HttpRequest, check_id: int) -> HttpResponse:
    """Ends the check's page mutes now (a check file's windows stay: the file owns them)."""
    check = get_object_or_404(Check, pk=check_id)
    now = timezone.now()
    ended = (
        MaintenanceWindow.objects.filter(check_obj=check)
        .page_mutes()
        .active(now)
        .update(ends_at=now)
    )
    if ended:
        messages.success(request, f"{check.name}: unmuted.")
    else:
        messages.info(request, f"{check.name} was not muted from this page.")
    return redirect("check-detail", check_id=check.pk)
