"""The staff pages: access rules, hostile data shown as text, the actions behind the buttons."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from batches.models import BatchItem, BatchOperation
from monitoring.kinds import Observation
from monitoring.models import Check, CheckRun, Report

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

pytestmark = pytest.mark.django_db


@pytest.fixture
def hostile_check() -> Check:
    check = Check.objects.create(
        name="api-health", kind="http", component="api", config={"url": "http://127.0.0.1:9/health"}
    )
    check.record(Observation(value=42.0, message=HOSTILE, status="critical"), duration_ms=12.5)
    return check


@pytest.fixture
def report() -> Report:
    return Report.objects.create(
        title="Health report", text=f"All fine {HOSTILE}", overall_status="ok"
    )


@pytest.fixture
def batch() -> BatchOperation:
    op = BatchOperation.objects.create(
        operation="http",
        creator="ops",
        status="completed_with_errors",
        total_items=3,
        succeeded_items=2,
        failed_items=1,
        started_at=timezone.now() - timedelta(seconds=10),
        finished_at=timezone.now(),
    )
    BatchItem.objects.create(batch=op, key="a", status="succeeded", attempts=1)
    BatchItem.objects.create(batch=op, key="b", status="succeeded", attempts=1)
    BatchItem.objects.create(batch=op, key="c", status="failed", attempts=3, error=HOSTILE)
    return op


def page_urls(check: Check, report: Report, batch: BatchOperation) -> list[str]:
    return [
        "/",
        "/dashboard/fragment/",
        "/checks/",
        f"/checks/{check.pk}/",
        "/activity/",
        "/activity/?window=1h",
        "/reports/",
        f"/reports/{report.pk}/",
        "/backlog/",
        "/batches/",
        f"/batches/{batch.pk}/",
        f"/batches/{batch.pk}/progress/",
    ]


def test_every_page_renders_for_staff(staff_client, hostile_check, report, batch):
    for url in page_urls(hostile_check, report, batch):
        response = staff_client.get(url)
        assert response.status_code == 200, url


def test_anonymous_users_are_sent_to_login(client, hostile_check, report, batch):
    for url in page_urls(hostile_check, report, batch):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url


def test_signed_in_non_staff_get_forbidden(plain_user_client, hostile_check, report, batch):
    for url in page_urls(hostile_check, report, batch):
        assert plain_user_client.get(url).status_code == 403, url
    posts = [
        f"/checks/{hostile_check.pk}/run/",
        f"/checks/{hostile_check.pk}/mute/",
        "/backlog/retry-failed/",
        f"/batches/{batch.pk}/retry/",
        f"/batches/{batch.pk}/cancel/",
    ]
    for url in posts:
        assert plain_user_client.post(url).status_code == 403, url


def test_hostile_check_message_is_shown_as_text(staff_client, hostile_check, batch):
    urls = [
        "/",
        "/dashboard/fragment/",
        "/checks/",
        f"/checks/{hostile_check.pk}/",
        f"/batches/{batch.pk}/",
    ]
    for url in urls:
        body = staff_client.get(url).content.decode()
        assert HOSTILE not in body, url
        assert ESCAPED in body or "&lt;script&gt;" in body, url


def test_report_text_is_escaped(staff_client, report):
    body = staff_client.get(f"/reports/{report.pk}/").content.decode()
    assert HOSTILE not in body and ESCAPED in body


def test_forms_refuse_posts_without_csrf_token(client, staff_user, hostile_check):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(staff_user)
    assert csrf_client.post(f"/checks/{hostile_check.pk}/run/").status_code == 403
    body = csrf_client.get(f"/checks/{hostile_check.pk}/").content.decode()
    assert body.count("csrfmiddlewaretoken") >= 2


def test_run_now_probes_the_check_and_records_a_run(staff_client, http_server):
    from tests.conftest import reply

    server = http_server(lambda request: reply(200, "ok"))
    check = Check.objects.create(
        name="loopback", kind="http", config={"url": server.url + "/health"}
    )
    response = staff_client.post(f"/checks/{check.pk}/run/", follow=True)
    assert response.status_code == 200
    assert CheckRun.objects.filter(check_obj=check).count() == 1
    assert len(server.requests) == 1
    check.refresh_from_db()
    assert check.status == "ok"
    assert "Ran loopback: ok" in response.content.decode()


def test_mute_opens_a_maintenance_window_for_the_check(staff_client, hostile_check):
    from monitoring.models import MaintenanceWindow

    staff_client.post(f"/checks/{hostile_check.pk}/mute/")
    window = MaintenanceWindow.objects.get(check_obj=hostile_check)
    assert window.starts_at <= timezone.now() < window.ends_at
    assert "Muted until" in staff_client.get(f"/checks/{hostile_check.pk}/").content.decode()


def test_check_runs_page_by_keyset(staff_client, hostile_check):
    start = timezone.now() - timedelta(hours=2)
    CheckRun.objects.bulk_create(
        CheckRun(
            check_obj=hostile_check,
            status="ok",
            value=i,
            message=f"run-{i:03d}",
            created_at=start + timedelta(seconds=i),
        )
        for i in range(120)
    )
    first = staff_client.get(f"/checks/{hostile_check.pk}/")
    cursor = first.context["runs"].next_cursor
    assert cursor
    second = staff_client.get(f"/checks/{hostile_check.pk}/", {"before": cursor})
    first_ids = {r.pk for r in first.context["runs"].items}
    second_ids = {r.pk for r in second.context["runs"].items}
    assert len(first_ids) == len(second_ids) == 50 and not first_ids & second_ids
    assert "<svg" in first.content.decode() and "threshold" in first.content.decode()


def test_dashboard_query_count_does_not_grow_with_data(staff_client, hostile_check):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get("/dashboard/fragment/").status_code == 200
        return len(ctx.captured_queries)

    small = count_queries()
    for i in range(40):
        check = Check.objects.create(
            name=f"c{i}",
            kind="http",
            component=f"comp{i % 5}",
            config={"url": "http://127.0.0.1:9/"},
        )
        check.record(Observation(value=float(i), message="fine"), duration_ms=1)
    assert count_queries() == small


def test_batch_cancel_and_retry_buttons_call_the_batch(staff_client, batch):
    staff_client.post(f"/batches/{batch.pk}/retry/")
    batch.refresh_from_db()
    assert batch.status == "pending" and batch.failed_items == 0
    staff_client.post(f"/batches/{batch.pk}/cancel/")
    batch.refresh_from_db()
    assert batch.status == "cancelled"


def test_activity_window_selector_changes_the_window(staff_client, hostile_check):
    response = staff_client.get("/activity/", {"window": "1h"})
    assert response.context["seconds"] == 3600
    assert staff_client.get("/activity/", {"window": "bogus"}).context["seconds"] == 30
