"""Check pages by kind, the checks list, and /activity/ as a list of events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backlog.models import BacklogEntry, BacklogStatus
from batches.models import BatchOperation, BatchStatus
from monitoring.history.rollups import refresh_rollups
from monitoring.kinds import Observation
from monitoring.models import Alert, Check, CheckRun, MaintenanceWindow
from monitoring.observability.activity import recent_events
from monitoring.web.checks import uptime_text
from opsconsole import registries

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def heartbeat(**config) -> Check:
    return Check.objects.create(
        name="nightly-backup",
        kind="heartbeat",
        component="backup",
        config={"period": 3600, "grace": 600, **config},
    )


def http_check(name: str = "api-health", component: str = "api") -> Check:
    return Check.objects.create(
        name=name, kind="http", component=component, config={"url": "http://127.0.0.1:9/health"}
    )


def page(client, check: Check, **params) -> str:
    response = client.get(f"/checks/{check.pk}/", params)
    assert response.status_code == 200
    return response.content.decode()


# --- check pages by kind -----------------------------------------------------------------------


def test_heartbeat_page_shows_ping_url_cron_example_schedule_and_next_ping(staff_client, client):
    check = heartbeat(max_duration=1800)
    with time_machine.travel(T0, tick=False):
        assert client.post(f"/ping/{check.ping_uuid}").status_code == 200
        body = page(staff_client, check)
    url = f"{settings.SITE_URL}/ping/{check.ping_uuid}"
    assert url.startswith("http")
    assert f'<code id="ping-url">{url}</code>' in body
    assert 'data-copy-target="ping-url"' in body
    assert f"curl -fsS -m 10 --retry 5 {url}" in body
    for form in (f"{url}/start", f"{url}/fail", f"{url}/$?"):
        assert form in body, form
    assert "0 * * * *" in body  # an hourly period gives an hourly cron line
    assert '<dd id="expected-schedule">every 1h, grace 10m</dd>' in body
    assert "at most 30m" in body
    assert '<dd id="next-ping">2026-03-02 10:00:00 UTC</dd>' in body
    assert '<dd id="late-after">2026-03-02 10:10:00 UTC</dd>' in body


def test_heartbeat_page_hides_run_now_timeout_and_thresholds(staff_client):
    body = page(staff_client, heartbeat())
    assert 'id="run-now"' not in body and "Run now" not in body
    assert 'id="timeout"' not in body and "Timeout" not in body
    assert 'id="thresholds"' not in body and "Thresholds" not in body
    assert '<dd id="next-ping">after the first ping</dd>' in body
    assert 'id="no-pings"' in body


def test_heartbeat_ping_bodies_are_escaped_and_a_long_one_is_cut_with_the_whole_one_behind(
    staff_client, client
):
    check = heartbeat()
    long_body = "line of output\n" * 100 + "THE-END"
    with time_machine.travel(T0, tick=False):
        client.post(f"/ping/{check.ping_uuid}/start", data=HOSTILE, content_type="text/plain")
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        client.post(f"/ping/{check.ping_uuid}/3", data=long_body, content_type="text/plain")
        # A lateness run between pings is not a ping.
        check.refresh_from_db()
        check.record(check.kind_impl.lateness(check, check.state, T0), duration_ms=1)
        body = page(staff_client, check)
    assert HOSTILE not in body
    assert ESCAPED in body
    assert "exit code 3" in body and "took 5m" in body
    pings = body[body.index('id="pings"') : body.index('id="history"')]
    assert pings.count('class="ping"') == 2
    # The newest first; its preview is cut, the whole kept body is one click away.
    assert pings.index("exit code 3") < pings.index(ESCAPED)
    assert pings.count("THE-END") == 1
    assert '<details class="ping-whole">' in pings and "Whole body (1,507 characters" in pings


def test_http_page_has_run_now_timeout_thresholds_and_its_endpoint(staff_client):
    check = Check.objects.create(
        name="api",
        kind="http",
        config={
            "url": "https://api.example/health",
            "expect_status": [200, 204],
            "contains": "ok",
            "headers": {"Authorization": "Bearer s3cr3t-token-value"},
        },
        warn=800,
    )
    body = page(staff_client, check)
    assert 'id="run-now"' in body
    assert 'id="timeout"' in body
    assert (
        '<dd id="thresholds">warning above 800 ms, critical above 5,000 ms</dd>' in body
    )  # the check's warn, the kind's default crit, with the unit
    assert "<h2>Endpoint</h2>" in body
    assert "https://api.example/health" in body and "200, 204" in body
    assert "s3cr3t-token-value" not in body
    assert 'id="ping-url"' not in body and 'id="pings"' not in body


def test_check_page_range_selector_marks_the_range_and_falls_back_on_a_bad_one(staff_client):
    check = http_check()
    with time_machine.travel(T0 - timedelta(days=3), tick=False):
        check.record(Observation(value=150.0, message="fine"), duration_ms=3)
    with time_machine.travel(T0 - timedelta(minutes=30), tick=False):
        check.record(Observation(value=160.0, message="fine"), duration_ms=3)
    with time_machine.travel(T0, tick=False):
        refresh_rollups(now=T0, since=T0 - timedelta(days=4))
        week = staff_client.get(f"/checks/{check.pk}/", {"range": "7d"})
        bogus = staff_client.get(f"/checks/{check.pk}/", {"range": "bogus<script>"})
        plain = staff_client.get(f"/checks/{check.pk}/")
    assert week.status_code == bogus.status_code == plain.status_code == 200
    assert week.context["chart_range"] == "7d"
    body = week.content.decode()
    assert '<a href="?range=7d#history" aria-current="page" class="current">7d</a>' in body
    for other in ("1h", "24h", "30d"):
        assert f'<a href="?range={other}#history">{other}</a>' in body
    assert "over the last 7 days" in body
    for response in (bogus, plain):
        assert response.context["chart_range"] == "24h"
        text = response.content.decode()
        assert 'aria-current="page" class="current">24h</a>' in text
        assert "over the last 24 hours" in text and "bogus" not in text


def test_check_page_shows_uptime_over_three_windows_and_the_strip(staff_client):
    check = http_check()
    changes = [
        ("ok", T0 - timedelta(days=10)),
        ("critical", T0 - timedelta(days=2)),  # down 12 h
        ("ok", T0 - timedelta(days=1, hours=12)),
        ("critical", T0 - timedelta(hours=6)),  # down 3 h
        ("ok", T0 - timedelta(hours=3)),
    ]
    CheckRun.objects.bulk_create(
        CheckRun(check_obj=check, status=status, status_changed=True, created_at=at)
        for status, at in changes
    )
    with time_machine.travel(T0, tick=False):
        refresh_rollups(now=T0, since=T0 - timedelta(hours=7))
        body = page(staff_client, check)
    uptimes = body[body.index('id="uptimes"') : body.index("</dl>", body.index('id="uptimes"'))]
    # 24 h: 3 h down of 24; 7 d: 15 h of 168 (91.071…, rounded down); 30 d: the 10 days
    # with data, 15 h of 240.
    assert "<dt>Uptime 24 h</dt><dd>87.50 %</dd>" in uptimes
    assert "<dt>Uptime 7 d</dt><dd>91.07 %</dd>" in uptimes
    assert "<dt>Uptime 30 d</dt><dd>93.75 %</dd>" in uptimes
    assert '<svg class="strip"' in body and "strip-critical" in body


def test_uptime_reads_rounded_down_never_100_when_down_and_ignores_float_noise(once_per_suite):
    assert uptime_text(None) == "—"
    assert uptime_text(100.0) == "100 %"
    assert uptime_text(99.99996) == "99.99 %"  # down 1 s in 30 days is not 100 %
    assert uptime_text(91.0714) == "91.07 %"
    assert uptime_text(49.99999972) == "50.00 %"  # SQLite's julianday arithmetic


@pytest.mark.parametrize(
    ("kind", "config", "title", "shown"),
    [
        (
            "sql_value",
            {"table": "monitoring_checkrun", "alias": "default", "unit": " runs"},
            "Data",
            ["Rows counted in table", "monitoring_checkrun", "Database alias"],
        ),
        (
            "freshness",
            {"sql": "SELECT max(created_at) FROM monitoring_checkrun", "warn_after": 7200},
            "Data",
            ['<pre class="fact-code">SELECT max(created_at)', "Warning after", "2h"],
        ),
        (
            "process",
            {"name": "gunicorn", "metric": "rss_mb", "scope": {"cwd": "/srv/app", "user": "web"}},
            "Processes",
            ["Process name", "gunicorn", "Scope", "cwd /srv/app, user web"],
        ),
        ("system", {"metric": "disk", "path": "/var"}, "Host", ["Disk path", "/var"]),
        ("batches", {"metric": "stuck", "stuck_after": 900}, "Batches", ["Stuck after", "15m"]),
    ],
)
def test_each_kind_shows_what_it_watches(staff_client, kind, config, title, shown):
    check = Check.objects.create(name=f"a-{kind}", kind=kind, config=config)
    body = page(staff_client, check)
    watches = body[body.index('id="watches"') : body.index('id="history"')]
    assert f"<h2>{title}</h2>" in watches
    for text in shown:
        assert text in watches, text
    assert 'id="run-now"' in body and 'id="ping-url"' not in body


def test_muted_state_shows_on_the_page_and_in_the_list_for_component_windows(staff_client):
    muted, other = http_check("api-health", "api"), http_check("db-health", "db")
    with time_machine.travel(T0, tick=False):
        MaintenanceWindow.objects.create(
            name="api deploy",
            component="api",
            starts_at=T0 - timedelta(minutes=5),
            ends_at=T0 + timedelta(hours=1),
        )
        assert '<dd id="muted-until">2026-03-02 10:00 UTC</dd>' in page(staff_client, muted)
        assert '<dd id="mute-state">on (not muted)</dd>' in page(staff_client, other)
        listing = staff_client.get("/checks/").content.decode()
    rows = {
        name: listing[listing.index(f'data-check="{check.pk}"') :].split("</tr>")[0]
        for name, check in (("api", muted), ("db", other))
    }
    assert "muted-state" in rows["api"] and "muted-state" not in rows["db"]


def test_checks_list_shows_uptime_and_strip_and_its_queries_do_not_grow_with_200_checks(
    staff_client,
):
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = staff_client.get("/checks/")
        assert response.status_code == 200
        return len(ctx.captured_queries)

    def add_checks(names: list[str]) -> None:
        """Checks down for the first of the last two hours, up since: runs that change the
        status, and the rollups the strip reads."""
        checks = Check.objects.bulk_create(
            Check(name=name, kind="http", component=f"comp{i % 7}", config={"url": "http://x/"})
            for i, name in enumerate(names)
        )
        CheckRun.objects.bulk_create(
            CheckRun(check_obj=check, status=status, status_changed=True, created_at=at)
            for check in checks
            for status, at in (
                ("critical", T0 - timedelta(hours=2)),
                ("ok", T0 - timedelta(hours=1)),
            )
        )
        refresh_rollups(now=T0, since=T0 - timedelta(hours=3))

    with time_machine.travel(T0, tick=False):
        add_checks(["first"])
        few = count()
        add_checks([f"c{i:03d}" for i in range(200)])
        MaintenanceWindow.objects.create(
            name="comp3 work",
            component="comp3",
            starts_at=T0 - timedelta(minutes=1),
            ends_at=T0 + timedelta(hours=1),
        )
        assert count() == few
        body = staff_client.get("/checks/").content.decode()
    row = body[body.index('data-check="') :].split("</tr>")[0]
    # Down one hour of the two with data: 50 % over every window.
    assert row.count('class="num uptime">50.00 %</td>') == 3
    assert '<svg class="strip"' in row and "strip-critical" in row and "strip-ok" in row
    assert body.count("muted-state") == len([i for i in range(200) if i % 7 == 3])


# --- activity as events ------------------------------------------------------------------------


@pytest.fixture
def one_of_each_event() -> dict[str, object]:
    """In the last hours: a check that failed (alert opened), was acknowledged and recovered
    (alert resolved); a batch that finished with errors; a backlog entry that failed."""
    check = http_check()
    with time_machine.travel(T0 - timedelta(hours=3), tick=False):
        check.record(Observation(status="critical", message="down"), duration_ms=1)
    alert = Alert.objects.get(check_obj=check)
    with time_machine.travel(T0 - timedelta(hours=2), tick=False):
        alert.acknowledge("alice")
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        check.record(Observation(value=12.0, message="fine"), duration_ms=1)
    batch = BatchOperation.objects.create(
        operation="http_call",
        creator="ops",
        status=BatchStatus.COMPLETED_WITH_ERRORS,
        total_items=1200,
        succeeded_items=1190,
        failed_items=10,
        started_at=T0 - timedelta(minutes=40),
        finished_at=T0 - timedelta(minutes=30),
    )
    BacklogEntry.objects.create(
        source="crm",
        key="customer-42",
        status=BacklogStatus.FAILED,
        attempts=5,
        last_error="<html><title>502 Bad Gateway</title>\nmore",
        updated_at=T0 - timedelta(minutes=10),
    )
    # Outside the 24 hours: not listed.
    BacklogEntry.objects.create(
        source="crm", key="ancient", status=BacklogStatus.FAILED, updated_at=T0 - timedelta(days=2)
    )
    return {"check": check, "alert": alert, "batch": batch}


def test_activity_lists_events_of_every_source_with_links_and_words(
    staff_client, one_of_each_event
):
    check, alert, batch = (one_of_each_event[k] for k in ("check", "alert", "batch"))
    with time_machine.travel(T0, tick=False):
        response = staff_client.get("/activity/")
    body = response.content.decode()
    events = body[body.index('id="activity-events"') : body.index("</ol>")]
    expected = [
        ("Backlog entry failed", "/backlog/?status=failed", "crm: customer-42"),
        ("Batch completed with errors", f"/batches/{batch.pk}/", "http_call by ops"),
        ("Alert resolved", f"/alerts/{alert.pk}/", alert.title),
        ("Check turned ok", f"/checks/{check.pk}/", "api-health"),
        ("Alert acknowledged", f"/alerts/{alert.pk}/", alert.title),
        ("Alert opened", f"/alerts/{alert.pk}/", alert.title),
        ("Check turned critical", f"/checks/{check.pk}/", "api-health"),
    ]
    positions = []
    for what, url, subject in expected:
        assert what in events, what
        assert f'<a href="{url}">{subject}</a>' in events, url
        positions.append(events.index(what))
    # Newest first (the check's and the alert's events at one time keep either order).
    assert positions[:3] == sorted(positions[:3])
    assert max(positions[3:5]) < min(positions[5:])
    assert "by alice" in events and "1,190 of 1,200 items succeeded, 10 failed" in events
    assert "ancient" not in events
    # The counts beside them speak in words too.
    assert "Items finished" in body and "items_finished" not in body
    assert "Check runs" in body


def test_recent_events_are_bounded_and_newest_first(one_of_each_event):
    with time_machine.travel(T0, tick=False):
        events, failed = recent_events(limit=3)
    assert not failed
    assert [e.what for e in events] == [
        "Backlog entry failed",
        "Batch completed with errors",
        "Alert resolved",
    ]


def test_a_failing_event_source_is_named_and_the_others_still_show(
    staff_client, one_of_each_event, monkeypatch
):
    def broken(since, until, limit):
        raise RuntimeError("no such table")

    monkeypatch.setitem(registries._event_sources, "zbroken", broken)
    with time_machine.travel(T0, tick=False):
        body = staff_client.get("/activity/").content.decode()
    assert "Could not read the events of: zbroken" in body
    assert "Backlog entry failed" in body
