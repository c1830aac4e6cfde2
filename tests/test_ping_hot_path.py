"""Issue 18: the ping hot path and ``Check.has_open_alert``.

A healthy ping to a check without an open alert is a handful of statements and never looks at
alerts; the flag that makes that possible follows the check's alerts however they open and
resolve (the engine, a person, the check removed).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.alerts.lifecycle import FLAP_MIN_CHANGES
from monitoring.kinds import Observation
from monitoring.models import Alert, AlertStatus, Check, CheckRun
from monitoring.models.checks import check_by_ping_uuid
from monitoring.web.ping import ping_success

pytestmark = pytest.mark.django_db

PING_STATEMENTS = 4


def heartbeat(name: str = "backup") -> Check:
    return Check.objects.create(
        name=name, kind="heartbeat", config={"period": 3600, "grace": 600}, status="ok"
    )


def flag(check: Check) -> bool:
    return Check.objects.values_list("has_open_alert", flat=True).get(pk=check.pk)


@pytest.mark.django_db(transaction=True)
def test_a_healthy_ping_is_at_most_four_statements_and_never_looks_at_alerts(client):
    """Counted as in production: no test transaction around it (its savepoints would count)."""
    check = heartbeat()
    assert client.get(f"/ping/{check.ping_uuid}").status_code == 200  # warm: the first ping
    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"/ping/{check.ping_uuid}", data=b"done", content_type="text/plain")
    assert response.status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= PING_STATEMENTS, statements
    assert not [sql for sql in statements if "monitoring_alert" in sql], statements
    assert CheckRun.objects.filter(check_obj=check).count() == 2


def test_a_ping_of_a_check_with_an_open_alert_still_resolves_it(client):
    check = heartbeat()
    client.get(f"/ping/{check.ping_uuid}/fail")
    alert = Alert.objects.get(check_obj=check)
    assert alert.status == AlertStatus.OPEN and flag(check)
    client.get(f"/ping/{check.ping_uuid}")
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and not flag(check)


def test_a_head_ping_is_recorded_and_answers_without_a_body():
    """Issue 16: the view itself sends no body (the test client would strip one)."""
    check = heartbeat()
    response = ping_success(RequestFactory().head(f"/ping/{check.ping_uuid}"), check.ping_uuid)
    assert response.status_code == 200 and response.content == b""
    assert CheckRun.objects.filter(check_obj=check, details__method="HEAD").count() == 1
    get = ping_success(RequestFactory().get(f"/ping/{check.ping_uuid}"), check.ping_uuid)
    assert get.content == b"OK\n"


def test_the_open_alert_flag_follows_open_acknowledge_resolve_and_removal(staff_user):
    check = Check.objects.create(name="api", kind="sql_value", config={"sql": "SELECT 1"})
    assert not flag(check)
    check.record(Observation(status="critical", message="down"), duration_ms=1)
    alert = Alert.objects.get(check_obj=check)
    assert flag(check)
    alert.acknowledge("oncall")
    assert flag(check), "an acknowledged alert is still active"
    alert.resolve("oncall", "fixed by hand")
    assert not flag(check), "a person resolving it clears the flag"
    # The problem returns: the engine opens a new alert; recovery resolves it.
    check.record(Observation(status="ok"), duration_ms=1)
    check.record(Observation(status="critical", message="down again"), duration_ms=1)
    assert flag(check)
    check.record(Observation(status="ok"), duration_ms=1)
    assert not flag(check)
    check.record(Observation(status="critical", message="and again"), duration_ms=1)
    assert flag(check)
    check_id = check.pk
    check.delete()
    assert not Alert.objects.filter(check_obj_id=check_id, status__in=["open", "acknowledged"])
    assert Alert.objects.filter(status=AlertStatus.OPEN).count() == 0


def test_a_flapping_alert_still_settles_when_healthy_runs_follow(settings):
    """Healthy, unchanged runs look at alerts only because the flag says there is one."""
    check = Check.objects.create(name="flappy", kind="sql_value", config={"sql": "SELECT 1"})
    start = timezone.now()
    for i in range(FLAP_MIN_CHANGES + 1):
        status = "critical" if i % 2 == 0 else "ok"
        check.record(Observation(status=status), duration_ms=1, now=start + timedelta(minutes=i))
    flapping = Alert.objects.get(check_obj=check, flapping=True, status=AlertStatus.OPEN)
    assert flag(check)
    for i in range(25):
        when = start + timedelta(minutes=30 + i)
        with time_machine.travel(when, tick=False):
            check.record(Observation(status="ok"), duration_ms=1, now=when)
    flapping.refresh_from_db()
    assert flapping.status == AlertStatus.RESOLVED and not flag(check)


def test_a_stale_flag_costs_one_lookup_and_is_cleared():
    check = heartbeat("stale")
    Check.objects.filter(pk=check.pk).update(has_open_alert=True)
    check.refresh_from_db()
    check.record(Observation(status="ok"), duration_ms=1)
    assert not flag(check)
    with CaptureQueriesContext(connection) as queries:
        check.record(Observation(status="ok"), duration_ms=1)
    assert not [q for q in queries.captured_queries if "monitoring_alert" in q["sql"]]


def test_a_ping_skips_the_middleware_meant_for_people_but_keeps_the_edge_headers(client):
    """Sessions, CSRF, the user, messages and throttling have nothing to do for a ping; the
    request id and the security headers still come with its answer."""
    check = heartbeat()
    response = client.get(f"/ping/{check.ping_uuid}", HTTP_X_REQUEST_ID="cron-12345678")
    assert response.status_code == 200 and response.content == b"OK\n"
    request = response.wsgi_request
    assert not hasattr(request, "session") and not hasattr(request, "user")
    assert response["X-Request-Id"] == "cron-12345678"
    assert response["Content-Security-Policy"] and response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Length"] == "3"
    # Anything else still takes the whole stack.
    assert hasattr(client.get("/healthz").wsgi_request, "session")


def test_an_unknown_ping_path_gets_the_usual_404(client):
    unknown_check = client.get("/ping/5a2e0d2a-6b57-4bd1-9f0c-0c6f3f2b1a77")
    assert unknown_check.status_code == 404 and b"no heartbeat check" in unknown_check.content
    no_route = client.get("/ping/not-a-uuid")
    assert no_route.status_code == 404
    assert hasattr(no_route.wsgi_request, "session"), "a path with no view takes the whole stack"


def test_the_ping_lookup_reads_the_check_as_the_orm_does():
    """The ping's own SELECT (SQL built once, the fields' converters applied) gives the same
    check as ``Check.objects.get``: JSON, dates, booleans, UUIDs and NULLs alike."""
    check = heartbeat()
    Check.objects.filter(pk=check.pk).update(
        state={"started_at": None, "nested": {"a": [1, 2.5, "x"]}},
        baseline={"drop_pct": 50, "window": 12},
        next_run_at=timezone.now(),
        has_open_alert=True,
        warn=1.5,
    )
    expected = Check.objects.get(pk=check.pk)
    found = check_by_ping_uuid(check.ping_uuid)
    assert found is not None and not found._state.adding
    for field in Check._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    assert check_by_ping_uuid(uuid.uuid4()) is None


def test_a_fast_path_run_is_stored_as_the_orm_would_store_it():
    check = heartbeat()
    run = check.record(
        Observation(value=1.5, message="fine", details={"body": "ünïcode \\x00"}), duration_ms=2
    )
    assert run.pk is not None and not run._state.adding
    stored = CheckRun.objects.get(pk=run.pk)
    for field in CheckRun._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(run, field.attname), field.name
    check.refresh_from_db()
    assert check.last_value == 1.5 and check.last_run_at == run.created_at
