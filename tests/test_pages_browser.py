"""The staff pages in the system Chromium against the live test server: each page's main
action through real clicks, the dashboard refreshing in place, hostile data staying inert,
and no horizontal overflow on a laptop or a phone screen."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.kinds import Observation
from monitoring.models import Check, CheckRun, Report
from tests.conftest import reply, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = "<script>alert(1)</script>"
# A payload that would run without a <script> tag if it were ever inserted as markup.
HOSTILE_ATTR = '<img src=x onerror="window.__xss=1">'
VIEWPORTS = [(1280, 800), (390, 844)]


def watch_for_scripts(page) -> list[str]:
    """Every dialog opened by the page; a hostile alert(1) would land here."""
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def assert_inert(page, dialogs: list[str]) -> None:
    assert dialogs == []
    assert page.evaluate("window.__xss === undefined")


def assert_no_horizontal_overflow(page, name: str) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name} overflows horizontally by {overflow}px"


def hostile_check(name: str = "api-health", url: str = "http://127.0.0.1:9/") -> Check:
    check = Check.objects.create(name=name, kind="http", component="api", config={"url": url})
    check.record(
        Observation(value=4200.0, message=f"{HOSTILE} {HOSTILE_ATTR}", status="critical"),
        duration_ms=30,
    )
    return check


def test_dashboard_refreshes_in_place_and_keeps_hostile_data_inert(logged_in_page):
    from monitoring.models import Alert

    page = logged_in_page
    dialogs = watch_for_scripts(page)
    check = hostile_check()
    Check.objects.create(
        name="db-latency", kind="http", component="database", config={"url": "http://127.0.0.1:9/"}
    )
    alert = Alert.objects.create(
        dedup_key="check:api",
        check_obj=check,
        title=f"api down {HOSTILE}",
        severity="critical",
        message=HOSTILE,
    )
    # Page time is driven by Playwright's clock: the 15 s refresh fires without the test
    # sleeping through it, and the page's own timer is what does the refresh.
    page.clock.install()
    page.goto("/")
    chip = page.locator('[data-check="api-health"]')
    assert chip.get_attribute("data-status") == "critical"
    assert HOSTILE in chip.inner_text()
    assert HOSTILE in page.locator("#alerts-tile").inner_text()
    assert "CRITICAL" in page.locator("#overall-state").inner_text()
    page.evaluate("window.__notReloaded = true")

    check.record(Observation(value=120.0, message="healthy again"), duration_ms=12)
    page.clock.run_for(20_000)
    page.wait_for_selector('[data-check="api-health"][data-status="ok"]', timeout=5_000)
    assert page.evaluate("window.__notReloaded === true"), "the dashboard reloaded"
    assert_inert(page, dialogs)

    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        assert_no_horizontal_overflow(page, f"dashboard at {width}x{height}")
        screenshot(page, f"dashboard-{width}x{height}")

    page.set_viewport_size({"width": 1280, "height": 800})
    page.click("#alerts-tile button[data-action=acknowledge]")
    page.wait_for_selector("text=Acknowledged:")
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by == "oncall"

    # The alert page (built by the alerts area) shows the same hostile title as text.
    response = page.goto(f"/alerts/{alert.pk}/")
    assert response is not None and response.status == 200
    assert HOSTILE in page.locator("body").inner_text()
    screenshot(page, "alert-detail")
    assert_inert(page, dialogs)


def test_check_page_runs_now_and_mutes(logged_in_page, http_server):
    page = logged_in_page
    dialogs = watch_for_scripts(page)
    server = http_server(lambda request: reply(200, "ok"))
    check = hostile_check("loopback-api", server.url + "/health")
    start = timezone.now() - timedelta(hours=3)
    CheckRun.objects.bulk_create(
        CheckRun(
            check_obj=check,
            status="ok" if i % 10 else "warning",
            value=100 + i % 7 * 20,
            duration_ms=5 + i % 3,
            created_at=start + timedelta(minutes=i),
        )
        for i in range(120)
    )
    page.goto("/checks/")
    assert HOSTILE in page.locator("td.message").first.inner_text()
    screenshot(page, "check-list")
    page.click(f'a[href="/checks/{check.pk}/"]')
    assert HOSTILE in page.locator("#check-message").inner_text()
    assert page.locator("svg.chart polyline.series").count() == 2
    assert page.locator("svg.chart line.threshold").count() >= 1
    runs_before = CheckRun.objects.filter(check_obj=check).count()

    page.click("#run-now")
    page.wait_for_selector("text=Ran loopback-api: ok")
    assert CheckRun.objects.filter(check_obj=check).count() == runs_before + 1
    assert len(server.requests) == 1
    assert page.locator("h1 .badge").inner_text() == "ok"

    page.click("#mute")
    page.wait_for_selector("#muted-until")
    page.click("#older-runs")
    page.wait_for_url("**before=*")
    assert page.locator("#runs tbody tr").count() == 50
    assert_inert(page, dialogs)
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"/checks/{check.pk}/")
        assert_no_horizontal_overflow(page, f"check page at {width}x{height}")
    screenshot(page, "check-detail")
    assert HOSTILE in page.locator("#runs").inner_text()
    assert_inert(page, dialogs)


def test_batch_page_retries_failed_items_and_cancels(logged_in_page):
    from batches.models import BatchItem, BatchOperation

    page = logged_in_page
    dialogs = watch_for_scripts(page)
    now = timezone.now()
    batch = BatchOperation.objects.create(
        operation="http",
        creator="ops",
        status="completed_with_errors",
        total_items=3,
        succeeded_items=2,
        failed_items=1,
        started_at=now - timedelta(seconds=30),
        finished_at=now,
    )
    BatchItem.objects.create(batch=batch, key="a", status="succeeded", attempts=1)
    BatchItem.objects.create(batch=batch, key="b", status="succeeded", attempts=1)
    BatchItem.objects.create(batch=batch, key="c", status="failed", attempts=3, error=HOSTILE_ATTR)

    page.goto("/batches/")
    page.click(f'a[href="/batches/{batch.pk}/"]')
    assert HOSTILE_ATTR in page.locator("#items").inner_text()
    page.click("#retry-failed")
    page.wait_for_selector("text=Retrying 1 failed item")
    batch.refresh_from_db()
    assert batch.status in ("pending", "running") and batch.failed_items == 0

    page.click("#cancel-batch")
    page.wait_for_selector("text=Batch cancelled")
    batch.refresh_from_db()
    assert batch.status == "cancelled"
    assert page.locator("#batch-status").inner_text() == "Cancelled"
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        assert_no_horizontal_overflow(page, f"batch page at {width}x{height}")
    screenshot(page, "batch-detail")
    assert_inert(page, dialogs)


def test_activity_backlog_and_reports_pages(logged_in_page):
    from backlog.models import BacklogEntry

    page = logged_in_page
    dialogs = watch_for_scripts(page)
    hostile_check()
    BacklogEntry.objects.create(
        source="users", key="42", reason="changed", status="failed", attempts=5, last_error=HOSTILE
    )
    BacklogEntry.objects.create(source="users", key="43", reason="changed")
    report = Report.objects.create(title="Health report", text=f"== Report ==\n{HOSTILE}")

    page.goto("/activity/")
    assert "(30s)" in page.locator("#window-range").inner_text()
    page.select_option("#window", "1h")
    page.wait_for_url("**window=1h")
    assert "1h 0m" in page.locator("#window-range").inner_text()
    assert page.locator('[data-section="checks"]').count() == 1
    screenshot(page, "activity")

    page.goto("/backlog/?status=failed")
    assert HOSTILE in page.locator("#entries td.message").inner_text()
    page.click("#backlog-retry")
    page.wait_for_selector("text=Requeued 1 failed entries")
    assert BacklogEntry.objects.get(key="42").status == "pending"
    screenshot(page, "backlog")

    page.goto("/reports/")
    page.click(f'a[href="/reports/{report.pk}/"]')
    assert HOSTILE in page.locator("#report-text").inner_text()
    screenshot(page, "report")

    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        for url in (
            "/activity/",
            "/backlog/",
            "/reports/",
            f"/reports/{report.pk}/",
            "/batches/",
            "/checks/",
        ):
            page.goto(url)
            assert_no_horizontal_overflow(page, f"{url} at {width}x{height}")
    assert_inert(page, dialogs)
