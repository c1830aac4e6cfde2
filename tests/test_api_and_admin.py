"""API keys, /api/checks/, /healthz, the admin and the schedules."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from monitoring.kinds import Observation
from monitoring.models import Check, CheckRun
from opsconsole.models import ApiKey, hash_key

pytestmark = pytest.mark.django_db


def test_healthz_needs_no_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_apikey_create_prints_the_key_once_and_stores_a_hash(capsys):
    call_command("apikey", "create", "deploy-bot", "--scope", "write")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    key = ApiKey.objects.get(name="deploy-bot")
    assert raw.startswith("ops_") and key.scope == "write"
    assert key.key_hash == hash_key(raw) and raw not in (key.key_hash, key.prefix)
    with pytest.raises(CommandError, match="exists"):
        call_command("apikey", "create", "deploy-bot")
    call_command("apikey", "list")
    assert raw not in capsys.readouterr().out


def test_api_checks_lists_checks_with_a_read_key(client, api_key_factory):
    check = Check.objects.create(
        name="db", kind="database", component="core", config={"alias": "default"}
    )
    check.record(Observation(value=1.5, message="SELECT 1 in 1.5 ms"), duration_ms=2)
    key = api_key_factory("read")
    response = client.get("/api/checks/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    (row,) = response.json()["checks"]
    assert {k: row[k] for k in ("name", "kind", "component", "status", "value", "message")} == {
        "name": "db",
        "kind": "database",
        "component": "core",
        "status": "ok",
        "value": 1.5,
        "message": "SELECT 1 in 1.5 ms",
    }
    assert row["last_run_at"]
    assert client.get("/api/checks/", HTTP_X_API_KEY=key).status_code == 200


def test_api_refuses_missing_wrong_and_revoked_keys(client, api_key_factory):
    assert client.get("/api/checks/").status_code == 401
    assert client.get("/api/checks/", HTTP_AUTHORIZATION="Bearer ops_wrong").status_code == 401
    key = api_key_factory("read", name="old")
    call_command("apikey", "revoke", "old")
    response = client.get("/api/checks/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 401 and "revoked" in response.json()["error"]


def test_api_accepts_a_staff_session_but_not_a_plain_user(staff_client, django_user_model):
    from django.test import Client

    assert staff_client.get("/api/checks/").status_code == 200
    viewer = Client()
    viewer.force_login(
        django_user_model.objects.create_user("viewer", password="x", is_staff=False)
    )
    assert viewer.get("/api/checks/").status_code == 401


def test_api_answers_405_for_the_wrong_method(client, api_key_factory):
    response = client.post("/api/checks/", HTTP_AUTHORIZATION=f"Bearer {api_key_factory('write')}")
    assert response.status_code == 405 and "GET" in response["Allow"]


def test_secrets_in_configs_are_masked_in_the_api(client, api_key_factory):
    Check.objects.create(name="r", kind="redis", config={"url": "redis://:topsecret@127.0.0.1:1/0"})
    body = client.get(
        "/api/checks/", HTTP_AUTHORIZATION=f"Bearer {api_key_factory()}"
    ).content.decode()
    assert "topsecret" not in body


def test_admin_needs_staff(client):
    response = client.get("/admin/monitoring/check/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admin_check_list_and_run_now_action(staff_client, http_server):
    server = http_server()
    check = Check.objects.create(name="web", kind="http", config={"url": server.url})
    assert staff_client.get("/admin/monitoring/check/").status_code == 200
    assert staff_client.get(f"/admin/monitoring/check/{check.pk}/change/").status_code == 200
    response = staff_client.post(
        "/admin/monitoring/check/",
        {"action": "run_now", "index": 0, "_selected_action": [check.pk]},
    )
    assert response.status_code == 302
    assert any(str(m).startswith("web: ok HTTP 200") for m in response.wsgi_request._messages)
    assert CheckRun.objects.filter(check_obj=check).count() == 1 and len(server.requests) == 1


def test_checkrun_admin_is_read_only_and_never_counts_the_whole_table(
    staff_client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    check = Check.objects.create(name="c", kind="system", config={"metric": "cpu"})
    CheckRun.objects.bulk_create(
        CheckRun(check_obj=check, status="ok", value=i) for i in range(300)
    )
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get("/admin/monitoring/checkrun/")
        filtered = staff_client.get("/admin/monitoring/checkrun/?status__exact=ok")
    assert response.status_code == 200 and filtered.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    run = CheckRun.objects.first()
    assert staff_client.get(f"/admin/monitoring/checkrun/{run.pk}/change/").status_code == 200
    assert staff_client.get("/admin/monitoring/checkrun/add/").status_code == 403


def test_setup_schedules_is_idempotent(capsys):
    call_command("setup_schedules")
    call_command("setup_schedules")
    assert Schedule.objects.filter(name="run-due-checks").count() == 1
    schedule = Schedule.objects.get(name="run-due-checks")
    assert schedule.func == "monitoring.checks.runner.run_due_checks" and schedule.minutes == 1
    assert "unchanged run-due-checks" in capsys.readouterr().out
    Schedule.objects.create(
        name="run-due-checks", func="x", schedule_type=Schedule.MINUTES, minutes=5
    )
    call_command("setup_schedules")
    assert Schedule.objects.filter(name="run-due-checks").count() == 1


def test_admin_refuses_a_config_its_kind_rejects(staff_client):
    base = {
        "name": "events",
        "kind": "sql_value",
        "component": "",
        "description": "",
        "interval_seconds": 60,
        "timeout_seconds": 10,
        "direction": "",
        "debounce": 1,
        "enabled": "on",
        "config": '{"sql": "DELETE FROM monitoring_check"}',
        "baseline": "null",
        "state": "{}",
    }
    response = staff_client.post("/admin/monitoring/check/add/", base)
    assert response.status_code == 200 and "refused" in response.content.decode()
    assert not Check.objects.exists()
    response = staff_client.post(
        "/admin/monitoring/check/add/",
        {**base, "config": '{"sql": "SELECT count(*) FROM monitoring_check"}'},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Check.objects.get().kind == "sql_value"
