"""/activity/ as a list of events (check pages by kind and the checks list follow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from backlog.models import BacklogEntry, BacklogStatus
from batches.models import BatchOperation, BatchStatus
from monitoring.kinds import Observation
from monitoring.models import Alert, Check
from monitoring.observability.activity import recent_events
from opsconsole import registries

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def http_check(name: str = "api-health", component: str = "api") -> Check:
    return Check.objects.create(
        name=name, kind="http", component=component, config={"url": "http://127.0.0.1:9/health"}
    )


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
