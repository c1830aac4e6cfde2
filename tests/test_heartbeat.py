"""Heartbeat checks: pings record runs, runchecks notices silence, time moved by time-machine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command

from monitoring.checks.checkfile import CheckFileError, validate_document
from monitoring.kinds import get_kind
from monitoring.models import Check, CheckRun

# Pings and runchecks run on other threads / connections: the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def heartbeat(name: str = "nightly-backup", **config) -> Check:
    config = {"period": "1h", "grace": "10m", **config}
    return Check.objects.create(
        name=name, kind="heartbeat", config=get_kind("heartbeat").validate_config(config)
    )


def runchecks(check: Check) -> CheckRun:
    call_command("runchecks", "--check", check.name, "--json")
    return CheckRun.objects.filter(check_obj=check).order_by("-created_at", "-id").first()


def test_ping_records_an_ok_run_with_get_post_and_head(client):
    check = heartbeat()
    for method in (client.get, client.post, client.head):
        response = method(f"/ping/{check.ping_uuid}")
        assert response.status_code == 200
    runs = list(CheckRun.objects.filter(check_obj=check).order_by("id"))
    assert [r.details["method"] for r in runs] == ["GET", "POST", "HEAD"]
    assert all(r.status == "ok" for r in runs)
    check.refresh_from_db()
    assert check.status == "ok"
    assert check.state["last_event"] == "success"


def test_late_heartbeat_is_found_by_runchecks_without_any_ping(client):
    with time_machine.travel(T0 - timedelta(hours=2), tick=False):
        check = heartbeat()
    with time_machine.travel(T0, tick=False):
        assert client.get(f"/ping/{check.ping_uuid}").status_code == 200
    with time_machine.travel(T0 + timedelta(minutes=65), tick=False):
        run = runchecks(check)
        assert run.status == "ok", run.message
        assert "within grace" in run.message
    with time_machine.travel(T0 + timedelta(minutes=71), tick=False):
        run = runchecks(check)
        assert run.status == "critical"
        assert run.message.startswith("late: last ping 1h 11m ago")
    check.refresh_from_db()
    assert check.status == "critical"
    # The job comes back: the next ping recovers the check at once.
    with time_machine.travel(T0 + timedelta(minutes=75), tick=False):
        client.get(f"/ping/{check.ping_uuid}")
    check.refresh_from_db()
    assert check.status == "ok"


def test_a_check_that_never_pinged_waits_then_goes_critical():
    with time_machine.travel(T0, tick=False):
        check = heartbeat()
        assert runchecks(check).status == "unknown"
    with time_machine.travel(T0 + timedelta(minutes=71), tick=False):
        run = runchecks(check)
    assert run.status == "critical"
    assert "no ping since the check was created" in run.message


def test_fail_is_critical_at_once_and_stays_until_a_success(client):
    check = heartbeat()
    assert (
        client.post(
            f"/ping/{check.ping_uuid}/fail", data=b"disk full", content_type="text/plain"
        ).status_code
        == 200
    )
    check.refresh_from_db()
    assert check.status == "critical"
    assert check.last_message == "job reported failure"
    assert CheckRun.objects.get(check_obj=check).details["body"] == "disk full"
    # runchecks keeps the verdict of the last ping rather than clearing it
    assert runchecks(check).status == "critical"
    client.get(f"/ping/{check.ping_uuid}")
    check.refresh_from_db()
    assert check.status == "ok"


def test_exit_codes(client):
    check = heartbeat()
    assert client.get(f"/ping/{check.ping_uuid}/0").status_code == 200
    check.refresh_from_db()
    assert check.status == "ok"
    assert client.get(f"/ping/{check.ping_uuid}/3").status_code == 200
    check.refresh_from_db()
    assert (check.status, check.last_message) == ("critical", "job exited with code 3")
    assert client.get(f"/ping/{check.ping_uuid}/256").status_code == 400


def test_run_shorter_than_min_duration_is_a_warning(client):
    check = heartbeat(min_duration="1m", max_duration="30m")
    with time_machine.travel(T0, tick=False):
        client.get(f"/ping/{check.ping_uuid}/start")
    check.refresh_from_db()
    assert check.status == "ok"
    assert check.last_message == "job started"
    with time_machine.travel(T0 + timedelta(seconds=5), tick=False):
        client.get(f"/ping/{check.ping_uuid}")
    run = CheckRun.objects.filter(check_obj=check).order_by("-id").first()
    assert run.status == "warning"
    assert run.value == pytest.approx(5)
    assert "shorter than min_duration 1m" in run.message
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        assert runchecks(check).status == "warning"
    # A normal run clears it.
    with time_machine.travel(T0 + timedelta(minutes=20), tick=False):
        client.get(f"/ping/{check.ping_uuid}/start")
    with time_machine.travel(T0 + timedelta(minutes=25), tick=False):
        client.get(f"/ping/{check.ping_uuid}")
    check.refresh_from_db()
    assert (check.status, check.last_message) == ("ok", "job finished in 5m")


def test_started_job_that_overruns_max_duration_is_critical(client):
    check = heartbeat(max_duration="30m")
    with time_machine.travel(T0, tick=False):
        client.get(f"/ping/{check.ping_uuid}")
        client.get(f"/ping/{check.ping_uuid}/start")
    with time_machine.travel(T0 + timedelta(minutes=31), tick=False):
        run = runchecks(check)
    assert run.status == "critical"
    assert "not finished within max_duration 30m" in run.message


def test_unknown_uuid_gets_404_and_writes_nothing(client):
    check = heartbeat()
    before = (CheckRun.objects.count(), Check.objects.get(pk=check.pk).updated_at)
    for suffix in ("", "/start", "/fail", "/1"):
        assert (
            client.post(
                f"/ping/{uuid.uuid4()}{suffix}", data=b"x", content_type="text/plain"
            ).status_code
            == 404
        )
    assert client.get("/ping/not-a-uuid").status_code == 404
    assert (CheckRun.objects.count(), Check.objects.get(pk=check.pk).updated_at) == before


def test_non_heartbeat_check_has_no_ping_url(client):
    other = Check.objects.create(name="cpu", kind="system", config={"metric": "cpu"})
    assert client.get(f"/ping/{other.ping_uuid}").status_code == 404
    assert not CheckRun.objects.exists()


def test_a_1mb_body_is_cut_to_10kb(client):
    check = heartbeat()
    body = ("log line\n" * 120_000).encode()[: 1024 * 1024]
    response = client.post(f"/ping/{check.ping_uuid}", data=body, content_type="text/plain")
    assert response.status_code == 200
    run = CheckRun.objects.get(check_obj=check)
    assert len(run.details["body"].encode()) == 10 * 1024
    assert run.details["body_truncated"] is True


def test_ping_url_is_shown_in_the_api_and_the_admin(staff_client):
    check = heartbeat()
    url = f"{settings.SITE_URL}/ping/{check.ping_uuid}"
    data = staff_client.get("/api/checks/").json()
    assert [c["ping_url"] for c in data["checks"] if c["name"] == check.name] == [url]
    page = staff_client.get(f"/admin/monitoring/check/{check.pk}/change/")
    assert url in page.content.decode()


def test_heartbeat_config_is_validated_at_load():
    document = {
        "checks": [
            {
                "name": "hb",
                "kind": "heartbeat",
                "config": {"period": "soon", "min_duration": "2h", "max_duration": "1h"},
            }
        ]
    }
    with pytest.raises(CheckFileError) as error:
        validate_document(document)
    text = str(error.value)
    assert "config.period: expected a duration" in text
    assert "config.min_duration: is longer than max_duration" in text
    config = get_kind("heartbeat").validate_config({"period": "1d"})
    assert config == {"period": 86400.0, "grace": 3600.0}
