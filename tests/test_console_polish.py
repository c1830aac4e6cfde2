"""The console's consistency: one date-time format on pages and in the admin, muted checks
shown wherever the check is, resolved alerts not shown in their severity's colour, a
favicon, an admin index grouped as operators look, no "0 results (Show all)" line without a
filter, and a dashboard whose cost does not grow with the number of checks."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backlog.models import BacklogEntry
from monitoring.models import Alert, Check, CheckRun, MaintenanceWindow, WindowSource
from opsconsole.admin_site import GROUPS
from opsconsole.templatetags.ops_pages import uptime, utc

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 25, 14, 3, 27, tzinfo=UTC)


def make_check(name: str = "api-health", component: str = "api", **fields) -> Check:
    return Check.objects.create(
        name=name,
        kind="http",
        component=component,
        config={"url": "http://127.0.0.1:9/"},
        **fields,
    )


def test_one_datetime_format_24_hour_utc_labelled(once_per_suite):
    assert utc(T0) == "2026-11-25 14:03 UTC"
    assert utc(T0, "seconds") == "2026-11-25 14:03:27 UTC"
    assert utc(datetime(2026, 11, 25, 23, 59, tzinfo=UTC)) == "2026-11-25 23:59 UTC"
    assert utc(None) == "—"


def test_uptime_is_rounded_down_so_a_check_that_was_down_never_reads_100(once_per_suite):
    assert uptime(99.999) == "99.99 %"
    assert uptime(100.0) == "100 %"
    assert uptime(100 * (1 - 1e-14)) == "100 %"  # float noise of a check never down
    assert uptime(87.5) == "87.50 %"
    assert uptime(None) == "—"


def test_the_admin_shows_the_same_format(admin_client):
    with time_machine.travel(T0, tick=False):
        alert = Alert.objects.create(dedup_key="k", title="disk full", severity="critical")
        body = admin_client.get(f"/admin/monitoring/alert/{alert.pk}/change/").content.decode()
        assert "2026-11-25 14:03 UTC" in body
        listing = admin_client.get("/admin/monitoring/alert/").content.decode()
    # The list says how long ago, with the full date-time on hover.
    assert 'title="2026-11-25 14:03 UTC">0s ago</time>' in listing
    assert "p.m." not in body and "Nov." not in body


def test_pages_show_the_format(staff_client):
    with time_machine.travel(T0, tick=False):
        alert = Alert.objects.create(dedup_key="k", title="disk full", severity="critical")
        alert.add_note("oncall", "looking")
        body = staff_client.get(f"/alerts/{alert.pk}/").content.decode()
        listing = staff_client.get("/alerts/").content.decode()
    assert "2026-11-25 14:03:27 UTC" in body  # the timeline, to the second
    assert "2026-11-25 14:03 UTC" in listing


def test_a_muted_check_is_shown_muted_on_the_dashboard_and_the_alerts(staff_client):
    muted = make_check("cache-redis", "cache", status="warning")
    make_check("api-health", "api", status="ok")
    with time_machine.travel(T0, tick=False):
        MaintenanceWindow.objects.create(
            name="mute cache-redis",
            check_obj=muted,
            starts_at=T0 - timedelta(minutes=1),
            ends_at=T0 + timedelta(hours=1),
            source=WindowSource.PAGE,
        )
        Alert.objects.create(
            dedup_key="check:cache-redis",
            check_obj=muted,
            title="cache-redis is warning",
            severity="warning",
        )
        dashboard = staff_client.get("/").content.decode()
        alerts = staff_client.get("/alerts/").content.decode()
    # One badge in the check's row, one beside the alert's check.
    assert dashboard.count('data-muted="1"') == 2
    assert "muted until 15:03" in dashboard
    assert alerts.count('data-muted="1"') == 1
    row = re.search(r'data-check="api-health".*?</a>', dashboard, re.S).group(0)
    assert "data-muted" not in row


def test_a_component_window_mutes_every_check_of_the_component(staff_client):
    make_check("db-primary", "database")
    make_check("db-replica", "database")
    make_check("api-health", "api")
    with time_machine.travel(T0, tick=False):
        MaintenanceWindow.objects.create(
            name="db upgrade",
            component="database",
            starts_at=T0 - timedelta(minutes=1),
            ends_at=T0 + timedelta(hours=2),
        )
        dashboard = staff_client.get("/").content.decode()
    assert dashboard.count('data-muted="1"') == 2


def test_a_resolved_alert_is_shown_resolved_not_in_its_severity_colour(staff_client):
    alert = Alert.objects.create(dedup_key="k", title="api down", severity="critical")
    alert.resolve("oncall", "fixed")
    listing = staff_client.get("/alerts/").content.decode()
    page = staff_client.get(f"/alerts/{alert.pk}/").content.decode()
    for body in (listing, page):
        assert 'class="badge critical"' not in body
        assert 'class="badge resolved" data-severity="critical">resolved' in body


def test_every_page_links_a_favicon_that_exists(staff_client):
    page = staff_client.get("/").content.decode()
    href = re.search(r'<link rel="icon" href="([^"]+)"', page).group(1)
    assert staff_client.get(href).status_code == 200
    admin = staff_client.get("/admin/").content.decode()
    assert f'<link rel="icon" href="{href}"' in admin
    # A client that asks for /favicon.ico anyway is sent to the same icon.
    response = staff_client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == href


def test_the_admin_index_groups_models_as_operators_look(admin_client):
    body = admin_client.get("/admin/").content.decode()
    captions = [html.unescape(c) for c in re.findall(r"<caption>\s*<a [^>]*>([^<]+)</a>", body)]
    groups = [title for title, _, _ in GROUPS]
    assert captions[: len(groups)] == groups
    # The rest keep their app's group after the operators' ones.
    assert "Authentication and Authorization" in captions[len(groups) :]
    checks = body[body.index(">Checks<") : body.index(">Alerts<")]
    assert "/admin/monitoring/check/" in checks and "/admin/monitoring/checkrun/" in checks


def test_an_app_index_page_still_lists_its_own_models(admin_client):
    body = admin_client.get("/admin/monitoring/").content.decode()
    assert "/admin/monitoring/check/" in body and "/admin/monitoring/alert/" in body


def test_large_table_lists_say_no_show_all_without_a_filter(admin_client):
    body = admin_client.get("/admin/backlog/backlogentry/").content.decode()
    assert "Show all" not in body and "0 results" not in body
    BacklogEntry.objects.create(source="users", key="1", status="failed", attempts=3)
    filtered = admin_client.get("/admin/backlog/backlogentry/?q=1").content.decode()
    assert "1 result" in filtered and "Show all" in filtered


def test_changelists_show_status_badges(admin_client):
    make_check("api-health", status="critical")
    body = admin_client.get("/admin/monitoring/check/").content.decode()
    assert '<span class="badge critical">critical</span>' in body


def test_dashboard_stays_within_20_queries_with_500_checks(staff_client):
    checks = Check.objects.bulk_create(
        Check(
            name=f"check-{i:03d}",
            kind="http",
            component=f"component-{i % 25}",
            config={"url": "http://127.0.0.1:9/"},
            status="ok" if i % 7 else "warning",
        )
        for i in range(500)
    )
    now = datetime.now(UTC)
    CheckRun.objects.bulk_create(
        CheckRun(
            check_obj=check,
            status=check.status,
            value=1.0,
            duration_ms=1,
            status_changed=True,
            created_at=now - timedelta(hours=1),
        )
        for check in checks
    )
    with CaptureQueriesContext(connection) as ctx:
        response = staff_client.get("/")
    assert response.status_code == 200
    assert response.content.decode().count('class="check-row ') == 500
    assert len(ctx.captured_queries) <= 20, [q["sql"][:120] for q in ctx.captured_queries]
