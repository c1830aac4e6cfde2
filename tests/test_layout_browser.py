"""Every page of the console, at laptop and phone size, in the system Chromium: no sideways
scrolling, no console error, no failed request (the favicon included), no word broken
mid-word in a table cell, and each page's main action on screen and clickable.

One browser, one data set, one walk over every page at both sizes: the problems found are
collected and reported together, so a failure names every page and size at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWPORTS = [(1280, 800), (390, 844)]

# Words a cell breaks across two lines ("cons|ole", "Durati|on"). A Range over each run of
# letters reports one client rect per line it occupies: more than one line-top means the
# browser split the word. Letters only: a break after a hyphen, a slash or a dot is a
# legitimate place to wrap.
BROKEN_WORDS_JS = """
() => {
  const broken = [];
  for (const cell of document.querySelectorAll('td, th')) {
    if (!cell.getClientRects().length) continue;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const re = /[A-Za-z\\u00C0-\\u024F]{2,}/g;
      let m;
      while ((m = re.exec(node.data))) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set();
        for (const r of range.getClientRects()) if (r.width > 0) tops.add(Math.round(r.top));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken.slice(0, 10);
}
"""

FULL_PAGE_SHOTS = {"dashboard", "check-http", "check-heartbeat", "alert-open", "report"}

# A table wider than its box scrolls inside it: on a laptop that hides columns (the admin's
# result lists, a page's .table-wrap).
CLIPPED_JS = """
() => [...document.querySelectorAll('.table-wrap, #changelist .results')]
  .filter(el => el.scrollWidth > el.clientWidth + 1)
  .map(el => `${el.id || el.className}: ${el.scrollWidth - el.clientWidth}px`)
"""

OVERFLOW_JS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def layout_data() -> dict[str, Any]:
    """Checks of every kind with runs, alerts in every state with timelines, batches with
    items, backlog entries including failures, a report: what a working installation shows."""
    from backlog.models import BacklogEntry
    from batches.models import BatchItem, BatchOperation
    from monitoring.history.rollups import refresh_rollups
    from monitoring.kinds import get_kind
    from monitoring.models import (
        Alert,
        Check,
        CheckRun,
        MaintenanceWindow,
        Notification,
        NotificationChannel,
        Report,
        WindowSource,
    )
    from monitoring.observability.report import build_report

    now = timezone.now()
    kinds = [
        ("console-healthz", "http", "console", {"url": "http://127.0.0.1:9/healthz"}, 182.0),
        ("console-database", "database", "console", {"alias": "default"}, 3.2),
        ("console-worker", "process", "console", {"cmdline": "manage.py qcluster"}, 2.0),
        ("cache-redis", "redis", "cache", {"url": "redis://127.0.0.1:9/0"}, 1.4),
        ("host-cpu", "system", "host", {"metric": "cpu"}, 37.5),
        ("host-free-memory", "system", "host", {"metric": "free_memory_mb"}, 1834.0),
        (
            "console-runs-fresh",
            "freshness",
            "data",
            {
                "model": "monitoring.CheckRun",
                "field": "created_at",
                "warn_after": "10m",
                "crit_after": "30m",
            },
            95.0,
        ),
        ("orders-last-hour", "sql_value", "data", {"sql": "SELECT 1"}, 1204.0),
        ("nightly-backup", "heartbeat", "jobs", {}, None),
        ("task-queue", "queue", "console", {}, 0.0),
    ]
    statuses = ["ok", "critical", "ok", "warning", "ok", "ok", "ok", "ok", "unknown", "ok"]
    checks = {}
    for (name, kind, component, config, value), status in zip(kinds, statuses, strict=True):
        check = Check.objects.create(
            name=name,
            kind=kind,
            component=component,
            config=get_kind(kind).validate_config(config),
            status=status,
            last_value=value,
            last_message="Responded with status 200 in 182 ms"
            if status == "ok"
            else "Connection refused by the database server after three attempts",
            last_run_at=now - timedelta(seconds=40),
            status_changed_at=now - timedelta(hours=2),
        )
        checks[kind] = check
        CheckRun.objects.bulk_create(
            CheckRun(
                check_obj=check,
                # A bad run every nine, and back: status changes the uptime is computed from.
                status="ok" if i % 9 else ("critical" if status == "critical" else "warning"),
                status_changed=i % 9 in (0, 1),
                value=None if value is None else value * (0.9 + (i % 5) / 20),
                duration_ms=12 + i % 7,
                message="Responded with status 200",
                created_at=now - timedelta(minutes=60 - i),
            )
            for i in range(60)
        )
    MaintenanceWindow.objects.create(
        name="mute cache-redis",
        check_obj=checks["redis"],
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(hours=1),
        reason="Muted from the check page by oncall",
        source=WindowSource.PAGE,
        created_by="oncall",
    )
    channel = NotificationChannel.objects.create(
        name="oncall-webhook", kind="webhook", url="http://127.0.0.1:9/hook"
    )

    def alert(check: Any, title: str, severity: str) -> Any:
        return Alert.objects.create(
            dedup_key=f"check:{check.name}",
            check_obj=check,
            component=check.component,
            title=title,
            severity=severity,
            message=title,
            opened_at=now - timedelta(minutes=45),
        )

    open_alert = alert(checks["database"], "console-database is critical", "critical")
    open_alert.add_note("oncall", "Restarted the database container; watching.")
    acked = alert(checks["redis"], "cache-redis is warning", "warning")
    acked.acknowledge("oncall")
    resolved = alert(checks["http"], "console-healthz was critical", "critical")
    resolved.acknowledge("oncall")
    resolved.resolve("oncall", "Deployed the fix")
    Notification.objects.create(
        alert=open_alert,
        channel=channel,
        step_kind="escalation",
        step_severity="critical",
        status="failed",
        attempts=3,
        last_error="Connection refused by the webhook receiver",
    )

    running = BatchOperation.objects.create(
        operation="http",
        creator="billing",
        status="running",
        total_items=40,
        succeeded_items=22,
        failed_items=3,
        started_at=now - timedelta(minutes=3),
    )
    finished = BatchOperation.objects.create(
        operation="http",
        creator="reporting",
        status="completed_with_errors",
        total_items=12,
        succeeded_items=10,
        failed_items=2,
        started_at=now - timedelta(hours=1),
        finished_at=now - timedelta(minutes=50),
    )
    for batch in (running, finished):
        BatchItem.objects.bulk_create(
            BatchItem(
                batch=batch,
                key=f"customer-{i:04d}",
                status="failed" if i < 2 else "succeeded",
                attempts=3 if i < 2 else 1,
                error="Connection refused by the billing service" if i < 2 else "",
            )
            for i in range(12)
        )
    for i in range(6):
        BacklogEntry.objects.create(
            source="users" if i % 2 else "orders",
            key=f"record-{i}",
            reason="changed upstream",
            status="failed" if i < 2 else ("processed" if i < 4 else "pending"),
            attempts=5 if i < 2 else 1,
            last_error="Timed out after 30 seconds waiting for the warehouse" if i < 2 else "",
        )
    # The status strips read the hourly rollups, which the scheduled task keeps up to date.
    refresh_rollups(now, since=now - timedelta(hours=2))
    # A report as the 30-minute job builds it (sections, tables, badges), and one saved before
    # reports kept their sections (text only): both must fit.
    report = build_report(now)
    Report.objects.create(
        title="Health report",
        overall_status="critical",
        text="== Health report ==\nOverall: CRITICAL\nFailing checks: console-database\n",
    )
    return {
        "checks": checks,
        "open_alert": open_alert,
        "acked": acked,
        "resolved": resolved,
        "running": running,
        "finished": finished,
        "report": report,
    }


def pages(data: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(name, URL, selector of the page's main action, or None for a page without one)."""
    checks = data["checks"]
    listed = [
        ("dashboard", "/", "#alerts-tile button[data-action=acknowledge]"),
        ("checks", "/checks/", "a[href^='/checks/'][href$='/']:not([href='/checks/'])"),
        ("alerts", "/alerts/", f"a[href='/alerts/{data['open_alert'].pk}/']"),
        ("alert-open", f"/alerts/{data['open_alert'].pk}/", "#acknowledge"),
        ("alert-acknowledged", f"/alerts/{data['acked'].pk}/", "#resolve"),
        ("alert-resolved", f"/alerts/{data['resolved'].pk}/", "#add-note"),
        ("batches", "/batches/", f"a[href='/batches/{data['running'].pk}/']"),
        ("batch-running", f"/batches/{data['running'].pk}/", "#cancel-batch"),
        ("batch-finished", f"/batches/{data['finished'].pk}/", "#retry-failed"),
        ("backlog", "/backlog/?status=failed", "#backlog-retry"),
        ("activity", "/activity/", "#window"),
        ("reports", "/reports/", f"a[href='/reports/{data['report'].pk}/']"),
        ("report", f"/reports/{data['report'].pk}/", "h1"),
        ("admin", "/admin/", "#content-main a"),
    ]
    for kind, check in checks.items():
        # A pushed heartbeat has no Run now; muting is the action every check page offers.
        action = "#mute, #unmute" if kind == "heartbeat" else "#run-now"
        listed.append((f"check-{kind}", f"/checks/{check.pk}/", action))
    for model in (
        "monitoring/check",
        "monitoring/checkrun",
        "monitoring/alert",
        "monitoring/alertevent",
        "monitoring/notification",
        "monitoring/notificationchannel",
        "monitoring/maintenancewindow",
        "backlog/backlogentry",
        "batches/batchoperation",
        "batches/batchitem",
        "monitoring/report",
    ):
        listed.append((f"admin-{model.split('/')[1]}", f"/admin/{model}/", "#result_list tbody a"))
    return listed


def visit(
    page, name: str, url: str, action: str | None, width: int, icons: dict[str, int]
) -> list[str]:
    """Opens one page and returns what is wrong with it. ``icons``: icon URL -> HTTP status,
    so that each icon is fetched once."""
    problems: list[str] = []
    response = page.goto(url)
    if response is None or response.status != 200:
        return [f"{url} answered {response.status if response else 'nothing'}"]
    page.wait_for_load_state("load")
    # Chromium asks for the icon a page links outside the page's own requests: follow the
    # link here, so that a missing icon (a 404 on every page) is caught.
    icon = page.locator("link[rel~=icon]")
    if not icon.count():
        problems.append("links no favicon (browsers then ask for /favicon.ico)")
    else:
        href = icon.first.get_attribute("href") or ""
        if href not in icons:
            icons[href] = page.request.get(href).status
        status = icons[href]
        if status != 200:
            problems.append(f"favicon {href} answered {status}")
    overflow = page.evaluate(OVERFLOW_JS)
    if overflow > 0:
        problems.append(f"scrolls sideways by {overflow}px")
    if width >= 1280:
        clipped = page.evaluate(CLIPPED_JS)
        if clipped:
            problems.append(f"tables cut off (they scroll inside their box): {clipped}")
    broken = page.evaluate(BROKEN_WORDS_JS)
    if broken:
        problems.append(f"words broken mid-word in table cells: {broken}")
    if action:
        target = page.locator(action).first
        if not target.count() or not target.is_visible():
            problems.append(f"main action {action!r} is not visible")
        else:
            box = target.bounding_box()
            if box is None or box["x"] < 0 or box["x"] + box["width"] > width + 0.5:
                problems.append(f"main action {action!r} is off-screen: {box}")
            try:
                target.click(trial=True, timeout=3_000)
            except Exception as exc:  # noqa: BLE001 - reported with the page, not raised
                problems.append(f"main action {action!r} is not clickable: {exc}")
    # Whole pages for the ones a user looks at most (and the README's), the first screen of
    # the others: a full-page capture of every page would double the test's time.
    full = name in FULL_PAGE_SHOTS or bool(problems)
    page.screenshot(path=str(ARTIFACTS / f"layout-{name}-{width}.png"), full_page=full)
    if full:
        # The first screen alone, as a user sees it on opening the page (docs/screenshots).
        page.screenshot(path=str(ARTIFACTS / f"layout-{name}-{width}-screen.png"))
    return problems


def test_every_page_fits_a_laptop_and_a_phone(logged_in_page):
    page = logged_in_page
    data = layout_data()
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    page.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "requestfailed",
        # A poll cut short by the next navigation is aborted by the browser, not failed.
        lambda request: (
            request.failure != "net::ERR_ABORTED"
            and errors.append(f"request failed: {request.url} {request.failure}")
        ),
    )
    page.on(
        "response",
        lambda response: (
            response.status >= 400 and errors.append(f"HTTP {response.status}: {response.url}")
        ),
    )

    report: list[str] = []
    icons: dict[str, int] = {}
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        for name, url, action in pages(data):
            errors.clear()
            problems = visit(page, name, url, action, width, icons)
            problems += errors
            report += [f"{name} ({url}) at {width}x{height}: {p}" for p in problems]
    # The dark theme follows the system setting: the same page, the palette swapped.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="dark")
    page.goto("/")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    if background != "rgb(13, 17, 23)":
        report.append(f"dashboard in the dark theme has background {background}")
    page.screenshot(path=str(ARTIFACTS / "layout-dashboard-dark-1280.png"))
    (ARTIFACTS / "layout-report.txt").write_text("\n".join(report) + "\n")
    assert not report, "\n".join(report)
