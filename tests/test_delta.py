"""The delta view: ``manage.py delta`` and ``GET /api/activity/``."""

from __future__ import annotations

import io
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from backlog import services
from monitoring.kinds import Observation
from monitoring.models import Check
from monitoring.observability import activity
from opsconsole import registries
from tests.conftest import manage, reply

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def delta(*args: str) -> str:
    out = io.StringIO()
    call_command("delta", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def recent_activity(settings, http_server):
    """Old activity outside the window, then in the last 30 s: 3 entries added, 2 processed,
    1 failed; one ok run and one critical run; one freshness check."""
    server = http_server(
        lambda request: reply(500) if "bad" in request.body.decode() else reply(200)
    )
    settings.BACKLOG_HANDLERS = {"users": f"webhook:{server.url}"}
    settings.BACKLOG_MAX_ATTEMPTS = 1
    api = Check.objects.create(name="api-health", kind="http", config={"url": server.url})
    Check.objects.create(
        name="orders-fresh",
        kind="freshness",
        status="ok",
        last_value=125.0,
        last_run_at=START - timedelta(seconds=10),
        last_message="newest order 2m ago",
    )
    with time_machine.travel(START - timedelta(minutes=5), tick=False):
        services.enqueue("users", "old")
        api.record(Observation(value=10), duration_ms=10)
    with time_machine.travel(START - timedelta(seconds=20), tick=False):
        services.enqueue("users", "u1")
        services.enqueue("users", "u2")
        services.enqueue("users", "bad")
        # "old" was processed in the window too: processed counts what finished in it.
        services.mark_processed(services.BacklogEntry.objects.filter(key="old"))
        services.process(limit=3)
        api.record(Observation(value=12), duration_ms=12)
        api.record(Observation(error="connection refused"), duration_ms=5)
    return START


def test_compact_prints_one_line_with_the_counts_of_the_window(recent_activity):
    with time_machine.travel(recent_activity, tick=False):
        output = delta("30", "--compact")
    lines = output.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert "backlog added=3 processed=3 failed=1" in line
    assert "checks ok=1 warning=0 critical=1" in line
    assert "orders-fresh=2m5s(ok)" in line


def test_a_longer_window_includes_older_activity(recent_activity):
    with time_machine.travel(recent_activity, tick=False):
        line = delta("10m", "--compact")
    assert "backlog added=4" in line and "checks ok=2" in line


def test_delta_without_arguments_prints_the_full_view(recent_activity):
    with time_machine.travel(recent_activity, tick=False):
        output = delta()
    assert "Activity in the last 30s" in output
    assert "Backlog" in output and "added 3" in output and "failed 1" in output
    assert "Checks" in output and "critical 1" in output
    assert "Freshness" in output and "orders-fresh" in output and "2m 5s" in output


def test_api_activity_agrees_with_the_command(recent_activity, client, api_key_factory):
    key = api_key_factory("read")
    with time_machine.travel(recent_activity, tick=False):
        response = client.get("/api/activity/?window=30", HTTP_AUTHORIZATION=f"Bearer {key}")
        data = activity.collect_activity(30)
    assert response.status_code == 200
    body = response.json()
    assert body["sections"] == data["sections"]
    assert body["sections"]["backlog"] == {"added": 3, "processed": 3, "failed": 1}
    assert body["sections"]["checks"]["critical"] == 1
    assert body["window_seconds"] == 30
    [fresh] = body["freshness"]
    assert fresh["check"] == "orders-fresh" and fresh["value"] == 125.0 and fresh["status"] == "ok"


def test_api_activity_refuses_a_bad_window(client, api_key_factory):
    key = api_key_factory("read")
    for window in ("soon", "0", "-5", "30d"):
        response = client.get(f"/api/activity/?window={window}", HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 400, window
        assert "window" in response.json()["details"]


def test_api_activity_needs_a_key_or_staff_session(staff_client):
    from django.test import Client

    assert Client().get("/api/activity/").status_code == 401
    assert staff_client.get("/api/activity/").status_code == 200


def test_command_refuses_a_bad_window():
    with pytest.raises(CommandError, match="WINDOW"):
        delta("soon")


def test_view_shows_every_registered_section_and_survives_a_broken_one(monkeypatch):
    monkeypatch.setitem(
        registries._activity_sources, "alerts", lambda since, until: {"opened": 2, "resolved": 1}
    )

    def broken(since, until):
        raise RuntimeError("table missing")

    monkeypatch.setitem(registries._activity_sources, "zbroken", broken)
    line = delta("--compact")
    assert "alerts opened=2 resolved=1" in line
    assert "zbroken error=RuntimeError: table missing" in line
    assert "backlog added=0" in line


def test_follow_refreshes_every_window_until_interrupted(subprocess_env):
    process = subprocess.Popen(
        manage("delta", "1", "--compact", "--follow"),
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        lines = []
        while len(lines) < 2 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(lines) == 2, err
    assert all(line.startswith("delta 1s | ") for line in lines)
    assert process.returncode == 0, err


def test_compact_says_never_measured_in_words():
    Check.objects.create(name="orders-fresh", kind="freshness")
    line = delta("--compact")
    assert "orders-fresh=never measured(" in line
    assert "nevermeasured" not in line
