"""The dashboard ``/``: everything an on-call engineer looks at first, on one page.

The overall state, open alerts and checks by component come first; the sections below them
are panels that apps register (``opsconsole.registries``): this app's freshness, resources
and queue, the backlog's and the batches' own. Each costs a fixed number of queries whatever
the table sizes, so the page stays fast as runs, alerts and batch items pile up.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, Value, When, Window
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from monitoring.alerts.policy import unnotified_alerts
from monitoring.history.strip import compact_strips
from monitoring.history.uptime import uptimes
from monitoring.models import (
    ACTIVE_STATUSES,
    SEVERITY_RANK,
    Alert,
    AlertSeverity,
    Check,
    CheckStatus,
)
from monitoring.observability.readings import QueueReading, overall_state, read_queue
from monitoring.web.mutes import mute_end
from opsconsole.page_access import staff_page
from opsconsole.registries import DashboardPanel, dashboard_panels, register_panel

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 15
ALERTS_SHOWN = 20
SEVERITY_RANKED = (AlertSeverity.CRITICAL, AlertSeverity.WARNING, AlertSeverity.INFO)


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
)


@dataclass(slots=True)
class DashboardCheck:
    """What a dashboard row shows of a check: read as plain values (500 model instances cost
    twice the query), plus its 24-hour uptime and strip."""

    id: int
    name: str
    kind: str
    component: str
    status: str
    last_value: float | None
    last_message: str
    last_run_at: datetime | None
    enabled: bool
    muted_until: datetime | None
    uptime_24h: float | None = None
    strip: str = ""

    @property
    def pk(self) -> int:
        return self.id


def dashboard_checks(now: datetime) -> list[DashboardCheck]:
    rows = (
        Check.objects.annotate(muted_until=mute_end(now))
        .order_by("component", "name")
        .values_list(*CHECK_FIELDS, "muted_until")
    )
    return [DashboardCheck(*row) for row in rows]


def check_groups(checks: list[DashboardCheck]) -> list[dict[str, Any]]:
    """Checks by component, the worst component first so that problems are on top."""
    groups: dict[str, list[DashboardCheck]] = {}
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
                    default=CheckStatus.PAUSED,
                ),
                "checks": members,
            }
        )
    result.sort(key=lambda g: (-SEVERITY_RANK[CheckStatus(g["status"])], g["component"]))
    return result


def freshness_rows(checks: list[DashboardCheck]) -> list[dict[str, Any]]:
    """Newest data of each freshness check (its age is the check's value), from the checks
    the dashboard has already read."""
    rows = []
    for check in sorted((c for c in checks if c.kind == "freshness"), key=lambda c: c.name):
        age_seconds = check.last_value
        newest = None
        if age_seconds is not None and check.last_run_at is not None:
            newest = check.last_run_at - timedelta(seconds=age_seconds)
        rows.append(
            {"check": check, "source": check.name, "newest": newest, "age_seconds": age_seconds}
        )
    return rows


def open_alerts() -> dict[str, Any]:
    active = Alert.objects.filter(status__in=ACTIVE_STATUSES)
    # Ordered in the database before the limit (sorting only the first rows read would hide a
    # new critical behind older warnings): the most severe, open before acknowledged, newest.
    rank = Case(
        *[When(severity=sev, then=Value(n)) for n, sev in enumerate(SEVERITY_RANKED)],
        default=Value(len(SEVERITY_RANKED)),
        output_field=IntegerField(),
    )
    alerts = list(
        active.select_related("check_obj")
        # COUNT(*) OVER () is computed before the LIMIT: every row carries the number of
        # active alerts, which spares the page a second query.
        .annotate(severity_rank=rank, active_total=Window(Count("id")))
        .order_by("severity_rank", "-status", "-opened_at", "-id")[:ALERTS_SHOWN]
    )
    total = alerts[0].active_total if alerts else 0
    return {"alerts": alerts, "total": total, "unnotified": unnotified_alerts()}


def system_resources(now: datetime) -> dict[str, Any]:
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


def queue_state(now: datetime) -> QueueReading:
    """The queue reading the queue check judges; a broken broker is shown, never raised."""
    return read_queue(now)


def register_panels() -> None:
    """This app's panels; called from ``MonitoringConfig.ready``."""
    register_panel(DashboardPanel("resources", "pages/panels/resources.html", system_resources, 40))
    register_panel(DashboardPanel("queue", "pages/panels/queue.html", queue_state, 50))


def annotate_checks(checks: list[DashboardCheck], now: datetime) -> dict[int, DashboardCheck]:
    """Puts on each check what its dashboard row shows beside its state: uptime over 24 h and
    the 24-hour status strip. Two queries for any number of checks: the status changes of the
    last 24 h only (the row shows no other window) and the hourly rollups. The strip is the
    compact drawing (one path per status): 500 of them are refetched every 15 s."""
    ids = [check.pk for check in checks]
    uptime = uptimes(ids, now, windows=("d1",))
    strips = compact_strips(ids, now)
    for check in checks:
        shares = uptime.get(check.pk)
        check.uptime_24h = shares.d1 if shares else None
        check.strip = strips[check.pk]
    return {check.pk: check for check in checks}


def dashboard_context() -> dict[str, Any]:
    now = timezone.now()
    checks = dashboard_checks(now)
    by_id = annotate_checks(checks, now)
    alerts = open_alerts()
    for alert in alerts["alerts"]:
        check = by_id.get(alert.check_obj_id)
        alert.check_muted_until = check.muted_until if check else None
    panels = []
    for panel in dashboard_panels():
        data = panel.context(now)
        if data is not None:
            panels.append({"name": panel.name, "template": panel.template, "data": data})
    return {
        "now": now,
        "overall": overall_state(),
        "groups": check_groups(checks),
        "freshness": {"rows": rows} if (rows := freshness_rows(checks)) else None,
        "check_total": len(checks),
        "alerts": alerts,
        "panels": panels,
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
