"""``/checks/`` and ``/checks/<id>/``: state, history chart, runs, run now and mute."""

from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from monitoring.alerts.delivery import report_test, test_channels
from monitoring.checks.runner import run_checks
from monitoring.kinds import ConfigError, mask_secrets
from monitoring.models import (
    AlertSeverity,
    Check,
    CheckRun,
    CheckStatus,
    MaintenanceWindow,
    WindowSource,
)
from monitoring.web.chart import Point, history_chart
from opsconsole.page_access import CHECK_CHANGE, staff_action, staff_page
from opsconsole.paging import latest_first

CHART_RUNS = 300
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


@require_GET
@staff_page
def check_list(request: HttpRequest) -> HttpResponse:
    checks = Check.objects.select_related("depends_on").order_by("component", "name")
    filters = {}
    for key in ("kind", "status", "component"):
        value = request.GET.get(key)
        if value:
            filters[key] = value
    checks = checks.filter(**filters)
    return render(
        request,
        "pages/check_list.html",
        {
            "checks": checks,
            "filters": filters,
            "statuses": CheckStatus.choices,
        },
    )


def _thresholds(check: Check) -> tuple[float | None, float | None, str, str]:
    try:
        warn, crit, direction = check.thresholds()
        unit = check.kind_impl.unit_for(check.config)
    except ConfigError:  # a check of a kind no longer installed still shows its history
        warn, crit, direction, unit = check.warn, check.crit, check.direction or "above", ""
    return warn, crit, direction, unit


@require_GET
@staff_page
def check_detail(request: HttpRequest, check_id: int) -> HttpResponse:
    check = get_object_or_404(Check.objects.select_related("depends_on"), pk=check_id)
    warn, crit, direction, unit = _thresholds(check)
    now = timezone.now()
    windows = MaintenanceWindow.objects.filter(check_obj=check).active(now)
    # A person's mute (Unmute ends it) and a check file's window are shown apart.
    page_mute = windows.page_mutes().order_by("-ends_at").first()
    file_window = windows.from_file().order_by("-ends_at").first()
    muted_until = max((w.ends_at for w in (page_mute, file_window) if w is not None), default=None)
    # Served by checkrun_check_latest_idx: the newest runs of one check.
    recent = list(
        CheckRun.objects.filter(check_obj=check)
        .order_by("-created_at", "-id")
        .values_list("created_at", "status", "value", "duration_ms")[:CHART_RUNS]
    )
    points = [Point(*row) for row in reversed(recent)]
    runs = latest_first(
        CheckRun.objects.filter(check_obj=check).defer("details"),
        request.GET.get("before"),
        RUNS_PER_PAGE,
    )
    return render(
        request,
        "pages/check_detail.html",
        {
            "check": check,
            "warn": warn,
            "crit": crit,
            "direction": direction,
            "unit": unit,
            "chart": history_chart(points, warn=warn, crit=crit, unit=unit),
            "chart_runs": len(points),
            "runs": runs,
            "config_json": json.dumps(mask_secrets(check.config), indent=2, sort_keys=True),
            "muted_until": muted_until,
            "page_mute": page_mute,
            "file_window": file_window,
            "mute_choices": list(MUTE_CHOICES),
        },
    )


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
