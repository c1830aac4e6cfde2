"""The dashboard ``/``: everything an on-call engineer looks at first, on one page.

This module is wiring: it reads every app's models and shows them, and keeps no logic of its
own beyond choosing what to show. Each section costs a fixed number of queries whatever the
table sizes, so the page stays fast as runs, alerts and batch items pile up.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from backlog import services as backlog_services
from batches.models import BatchOperation
from monitoring.alert_models import Alert
from monitoring.models import SEVERITY_RANK, Check, CheckStatus
from opsconsole.page_access import ALERT_CHANGE, staff_action, staff_page

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 15
ALERTS_SHOWN = 20
BATCHES_SHOWN = 10


@dataclass
class OverallState:
    status: str
    summary: str
    checks_by_status: dict[str, int] = field(default_factory=dict)
    open_alerts: int = 0


def overall_state() -> OverallState:
    """Worst of the enabled checks and the open alerts, in two aggregate queries."""
    counts = {
        row["status"]: row["n"]
        for row in Check.objects.filter(enabled=True).values("status").annotate(n=Count("id"))
    }
    status = CheckStatus.OK
    for name, n in counts.items():
        if n and SEVERITY_RANK.get(CheckStatus(name), 0) > SEVERITY_RANK[CheckStatus(status)]:
            status = name
    open_alerts = 0
    rows = Alert.objects.filter(status="open").values("severity").annotate(n=Count("id"))
    for row in rows:
        open_alerts += row["n"]
        severity = str(row["severity"]).lower()
        if severity in ("warning", "critical") and (
            SEVERITY_RANK[CheckStatus(severity)] > SEVERITY_RANK[CheckStatus(status)]
        ):
            status = severity
    failing = counts.get(CheckStatus.CRITICAL, 0) + counts.get(CheckStatus.WARNING, 0)
    if not counts:
        summary = "No checks configured"
        status = CheckStatus.UNKNOWN if not open_alerts else status
    elif status == CheckStatus.OK:
        summary = f"All {sum(counts.values())} checks OK"
    else:
        parts = []
        if counts.get(CheckStatus.CRITICAL):
            parts.append(f"{counts[CheckStatus.CRITICAL]} critical")
        if counts.get(CheckStatus.WARNING):
            parts.append(f"{counts[CheckStatus.WARNING]} warning")
        if counts.get(CheckStatus.UNKNOWN):
            parts.append(f"{counts[CheckStatus.UNKNOWN]} unknown")
        summary = ", ".join(parts) if failing or parts else "Attention needed"
    if open_alerts:
        summary += f" · {open_alerts} open alert{'s' if open_alerts != 1 else ''}"
    return OverallState(str(status), summary, counts, open_alerts)


# --- sections ------------------------------------------------------------------------------

CHECK_FIELDS = (
    "id",
    "name",
    "kind",
    "component",
    "status",
    "last_value",
    "last_message",
    "last_run_at",
    "enabled",
    "config",
    "warn",
    "crit",
    "direction",
)


def check_groups(checks: list[Check]) -> list[dict[str, Any]]:
    """Checks by component, the worst component first so that problems are on top."""
    groups: dict[str, list[Check]] = {}
    for check in checks:
        groups.setdefault(check.component or "other", []).append(check)
    result = []
    for component, members in groups.items():
        members.sort(key=lambda c: (-SEVERITY_RANK.get(CheckStatus(c.status), 0), c.name))
        result.append(
            {
                "component": component,
                "status": max(
                    (c.status for c in members if c.enabled),
                    key=lambda s: SEVERITY_RANK[CheckStatus(s)],
                    default="paused",
                ),
                "checks": members,
            }
        )
    result.sort(key=lambda g: (-SEVERITY_RANK[CheckStatus(g["status"])], g["component"]))
    return result


def freshness_rows(checks: list[Check]) -> list[dict[str, Any]]:
    rows = []
    for check in checks:
        if check.kind != "freshness":
            continue
        age_seconds = check.last_value
        newest = None
        if age_seconds is not None and check.last_run_at is not None:
            newest = check.last_run_at - timedelta(seconds=age_seconds)
        rows.append(
            {
                "check": check,
                "source": check.name,
                "newest": newest,
                "age_seconds": age_seconds,
            }
        )
    return rows


def open_alerts() -> dict[str, Any]:
    active = Alert.objects.filter(status__in=["open", "acknowledged"])
    # Open before acknowledged, then the most severe, then the oldest: the ones to act on.
    alerts = list(
        active.select_related("check_obj").order_by("-status", "opened_at")[: ALERTS_SHOWN * 3]
    )
    rank = {"critical": 0, "warning": 1, "info": 2}
    alerts.sort(
        key=lambda a: (a.status != "open", rank.get(str(a.severity).lower(), 3), a.opened_at)
    )
    return {"alerts": alerts[:ALERTS_SHOWN], "total": active.count()}


def batches_in_flight() -> dict[str, Any]:
    in_flight = BatchOperation.objects.filter(status__in=["pending", "running"])
    return {
        "batches": list(in_flight.order_by("-created_at")[:BATCHES_SHOWN]),
        "total": in_flight.count(),
    }


def backlog_summary() -> dict[str, Any]:
    return backlog_services.stats()


def system_resources() -> dict[str, Any]:
    import psutil

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    memory = psutil.virtual_memory()
    return {
        # interval=None: the figure since the previous call, without blocking the request.
        "cpu": psutil.cpu_percent(interval=None),
        "memory": memory.percent,
        "free_memory_mb": memory.available / 1024 / 1024,
        "disk": psutil.disk_usage("/").percent,
        "load": load,
    }


def queue_state(now) -> dict[str, Any]:
    """Tasks waiting in the broker and failures in the last hour; never fails the page."""
    state: dict[str, Any] = {"queued": None, "failed_last_hour": None, "clusters": None}
    try:
        from django_q.brokers import get_broker

        state["queued"] = get_broker().queue_size()
    except Exception as exc:  # a broken broker is shown, not raised
        state["error"] = f"broker: {exc}"
    try:
        from django_q.models import Failure

        state["failed_last_hour"] = Failure.objects.filter(
            stopped__gte=now - timedelta(hours=1)
        ).count()
    except Exception as exc:
        state["error"] = f"failures: {exc}"
    return state


def dashboard_context() -> dict[str, Any]:
    now = timezone.now()
    checks = list(Check.objects.only(*CHECK_FIELDS).order_by("component", "name"))
    return {
        "now": now,
        "overall": overall_state(),
        "groups": check_groups(checks),
        "check_total": len(checks),
        "freshness": freshness_rows(checks),
        "alerts": open_alerts(),
        "batches": batches_in_flight(),
        "backlog": backlog_summary(),
        "resources": system_resources(),
        "queue": queue_state(now),
        "refresh_seconds": REFRESH_SECONDS,
    }


# --- views ---------------------------------------------------------------------------------


@require_GET
@staff_page
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "pages/dashboard.html", dashboard_context())


@require_GET
@staff_page
def dashboard_fragment(request: HttpRequest) -> HttpResponse:
    """The dashboard body alone, swapped in by the page every 15 s: the HTML is escaped here on
    the server, so the browser never builds markup from raw check data."""
    response = render(request, "pages/_dashboard_body.html", dashboard_context())
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@staff_action(ALERT_CHANGE)
def acknowledge_alert(request: HttpRequest, alert_id: int) -> HttpResponse:
    """One-click Acknowledge from the dashboard; the alert model does the work."""
    from django.contrib import messages

    alert = get_object_or_404(Alert, pk=alert_id)
    if alert.acknowledge(request.user.get_username(), via="dashboard"):
        messages.success(request, f"Acknowledged: {alert.title}")
    else:
        messages.info(request, f"Already {alert.status}: {alert.title}")
    return redirect("dashboard")
