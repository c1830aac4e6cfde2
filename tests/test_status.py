"""/api/status and the console watching itself; behaviour while Redis is stopped."""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import timedelta

import pytest
import time_machine
from django.test.utils import override_settings
from django.utils import timezone

from monitoring.models import Check
from tests.conftest import closed_port, manage

pytestmark = pytest.mark.django_db

RESILIENT = "opsconsole.cache.ResilientRedisCache"


def make_check(name: str = "api-health", interval: int = 60, ran_ago: float = 5, **extra) -> Check:
    now = timezone.now()
    return Check.objects.create(
        name=name,
        kind="http",
        config={"url": "http://127.0.0.1:9/"},
        interval_seconds=interval,
        status="ok",
        last_run_at=now - timedelta(seconds=ran_ago),
        **extra,
    )


def redis_settings(url: str) -> dict:
    return {
        "REDIS_URL": url,
        "CACHES": {
            "default": {
                "BACKEND": RESILIENT,
                "LOCATION": url,
                "KEY_PREFIX": "h8status",
                "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            }
        },
    }


def test_status_is_200_with_every_component_up(staff_client):
    make_check()
    response = staff_client.get("/api/status")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "up" and body["failing"] == []
    assert set(body["components"]) == {"server", "database", "cache", "queue", "scheduler"}
    assert all(c["state"] == "up" for c in body["components"].values())
    assert "checks last ran" in body["components"]["scheduler"]["detail"]


def test_anonymous_callers_get_states_without_details(client):
    make_check()
    body = client.get("/api/status").json()
    assert body["components"]["database"] == {"state": "up"}


def test_status_is_503_naming_the_cache_when_redis_is_stopped_and_200_after_recovery(
    staff_client, redis_url
):
    make_check()
    with override_settings(**redis_settings(f"redis://127.0.0.1:{closed_port()}/0")):
        response = staff_client.get("/api/status")
        assert response.status_code == 503
        body = response.json()
        assert "cache" in body["failing"] and body["components"]["cache"]["state"] == "down"
        assert "unreachable" in body["components"]["cache"]["detail"]
        assert staff_client.get("/healthz").status_code == 200
        # the API and the metrics keep answering: the cache degrades to misses
        assert staff_client.get("/api/checks/").status_code == 200
        assert staff_client.get("/").status_code == 200  # the dashboard
        assert staff_client.get("/admin/").status_code == 200
        metrics = staff_client.get("/metrics").content.decode()
        assert "opsconsole_redis_up 0.0" in metrics
    with override_settings(**redis_settings(redis_url)):
        response = staff_client.get("/api/status")
        assert response.status_code == 200, response.json()
        assert response.json()["components"]["cache"]["state"] == "up"


def test_status_is_503_when_checks_have_not_run_for_two_intervals_and_an_alert_is_raised(
    staff_client, caplog
):
    from monitoring.models import Alert

    make_check(interval=60, ran_ago=30)
    start = timezone.now()
    with time_machine.travel(start + timedelta(seconds=80), tick=False):
        assert staff_client.get("/api/status").status_code == 200  # under two intervals: fine
    with (
        time_machine.travel(start + timedelta(seconds=200), tick=False),
        caplog.at_level(logging.CRITICAL),
    ):
        response = staff_client.get("/api/status")
        assert response.status_code == 503
        body = response.json()
        assert body["failing"] == ["scheduler"]
        assert body["components"]["scheduler"]["last_run_seconds_ago"] == pytest.approx(230, abs=2)
        staff_client.get("/api/status")  # a second request does not open a second alert
    alerts = Alert.objects.filter(dedup_key="monitoring-stalled")
    assert alerts.count() == 1
    alert = alerts.get()
    assert alert.severity == "critical" and alert.status == "open"
    assert any("monitoring stalled" in r.getMessage() for r in caplog.records)

    # checks run again: 200, and the alert resolves
    Check.objects.update(last_run_at=timezone.now())
    assert staff_client.get("/api/status").status_code == 200
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_stalled_monitoring_logs_critical_when_the_alert_cannot_be_stored(monkeypatch, caplog):
    from monitoring.models import Alert
    from monitoring.observability import stalled

    def broken_raise_alert(*args, **kwargs):
        raise RuntimeError("alert table unavailable")

    make_check(ran_ago=600)
    monkeypatch.setattr(stalled, "raise_alert", broken_raise_alert)
    with caplog.at_level(logging.CRITICAL, logger="opsconsole.monitoring_stalled"):
        reading = stalled.check_monitoring_stalled()
    assert reading.stalled
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL]
    assert "No scheduled check has run for 10m" in caplog.records[0].getMessage()
    assert not Alert.objects.filter(dedup_key=stalled.DEDUP_KEY).exists()


def test_a_fresh_installation_gets_two_intervals_before_it_counts_as_stalled(staff_client):
    Check.objects.create(
        name="new", kind="http", config={"url": "http://127.0.0.1:9/"}, interval_seconds=60
    )
    assert staff_client.get("/api/status").status_code == 200


def test_runchecks_keeps_working_with_redis_stopped_and_the_redis_check_goes_critical(
    subprocess_env,
):
    """Acceptance 5: Redis down (REDIS_URL set): runchecks still records, the Redis check is
    critical, an alert opens and the status endpoint logic names the cache."""
    from monitoring.models import Alert, CheckRun

    dead = f"redis://127.0.0.1:{closed_port()}/0"
    check = Check.objects.create(
        name="redis-cache",
        kind="redis",
        config={"url": dead, "metric": "memory"},
        timeout_seconds=1,
    )
    env = {**subprocess_env, "REDIS_URL": dead}
    result = subprocess.run(
        manage("runchecks", "--all", "--json"), env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    assert rows[0]["name"] == "redis-cache" and rows[0]["status"] == "critical"
    check.refresh_from_db()
    assert check.status == "critical"
    assert CheckRun.objects.filter(check_obj=check).count() == 1  # nothing lost
    assert Alert.objects.filter(check_obj=check, status="open").exists()

    status = subprocess.run(
        manage(
            "shell",
            "-c",
            "from monitoring.web.status import status_components as s; import json; "
            "print(json.dumps({k: v['state'] for k, v in s().items()}))",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(status.stdout.strip().splitlines()[-1])["cache"] == "down"

    escalate = subprocess.run(
        manage("escalate"), env=env, capture_output=True, text=True, timeout=60
    )
    assert escalate.returncode == 0, escalate.stderr
