"""/metrics: the operations snapshot, its sharing across processes, the token; metrics
commands; prometheus_rules."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta

import pytest
import time_machine
import yaml
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from monitoring.models import Check
from monitoring.observability import snapshot
from tests.conftest import manage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_snapshot():
    from django.core.cache import caches

    def forget() -> None:
        snapshot.reset_local()
        caches["default"].delete(snapshot.CACHE_KEY)  # the shared copy, when REDIS_URL is set

    forget()
    yield
    forget()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def make_check(
    name: str, status: str, value: float | None = 1.0, component: str = "api", **extra
) -> Check:
    now = timezone.now()
    return Check.objects.create(
        name=name,
        kind="http",
        component=component,
        config={"url": "http://127.0.0.1:9/"},
        status=status,
        last_value=value,
        last_run_at=now,
        **extra,
    )


def test_scrape_reports_check_status_value_and_last_run(client):
    make_check("api-health", "critical", 812.5)
    make_check("db-latency", "ok", 3.0, component="database")
    make_check("paused-one", "paused", None)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    assert found[("opsconsole_check_status", (("check", "api-health"), ("component", "api")))] == 2
    assert (
        found[("opsconsole_check_status", (("check", "db-latency"), ("component", "database")))]
        == 0
    )
    assert found[("opsconsole_check_status", (("check", "paused-one"), ("component", "api")))] == 3
    assert found[("opsconsole_check_value", (("check", "api-health"),))] == 812.5
    assert ("opsconsole_check_value", (("check", "paused-one"),)) not in found
    assert found[
        ("opsconsole_check_last_run_timestamp_seconds", (("check", "api-health"),))
    ] == pytest.approx(timezone.now().timestamp(), abs=60)
    assert ("opsconsole_queue_tasks", (("state", "queued"),)) in found
    # django-prometheus's own registry is served beside the snapshot
    assert "django_http_requests_before_middlewares_total" in response.content.decode()


def test_two_scrapes_within_the_window_issue_no_collector_queries(client):
    make_check("api-health", "ok")
    with override_settings(METRICS_SNAPSHOT_SECONDS=15):
        with CaptureQueriesContext(connection) as first:
            client.get("/metrics")
        assert len(first.captured_queries) > 0
        make_check("added-later", "critical")
        with CaptureQueriesContext(connection) as second:
            body = client.get("/metrics").content.decode()
        assert second.captured_queries == []
        assert "added-later" not in body  # served from the snapshot


def test_snapshot_is_rebuilt_after_the_window(client):
    make_check("api-health", "ok")
    start = timezone.now()
    with override_settings(METRICS_SNAPSHOT_SECONDS=15), time_machine.travel(start, tick=False):
        client.get("/metrics")
        make_check("added-later", "warning")
        with time_machine.travel(start + timedelta(seconds=16), tick=False):
            body = client.get("/metrics").content.decode()
    assert 'opsconsole_check_status{check="added-later",component="api"} 1.0' in body


def test_metrics_token_protects_the_endpoint(client):
    with override_settings(METRICS_TOKEN="s3cret-token"):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


def test_a_failing_collector_is_reported_and_the_rest_still_served(client):
    from opsconsole import registries

    def broken(now):
        raise RuntimeError("boom")

    registries.register_collector("zz-broken", broken)
    try:
        make_check("api-health", "ok")
        body = client.get("/metrics").content.decode()
    finally:
        registries.unregister_collector("zz-broken")
    assert 'opsconsole_collector_errors{collector="zz-broken"} 1.0' in body
    assert 'opsconsole_check_status{check="api-health"' in body


def test_snapshot_is_shared_between_processes_through_redis(subprocess_env, redis_url, client):
    """A snapshot built by another process (a gunicorn worker) is served without queries."""
    import redis

    prefix = f"h8metrics{timezone.now().timestamp():.0f}"
    env = {
        **subprocess_env,
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": prefix,
        "METRICS_SNAPSHOT_SECONDS": "60",
    }
    make_check("shared-check", "warning", 7.0)
    built = subprocess.run(
        manage(
            "shell",
            "-c",
            "from monitoring.observability.snapshot import current; print(current().build_ms)",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    cache_settings = {
        "default": {
            "BACKEND": "opsconsole.cache.ResilientRedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        }
    }
    try:
        with override_settings(CACHES=cache_settings, METRICS_SNAPSHOT_SECONDS=60):
            Check.objects.filter(name="shared-check").update(status="critical")
            with CaptureQueriesContext(connection) as queries:
                body = client.get("/metrics").content.decode()
            assert queries.captured_queries == []
            # the other process's snapshot: the change made afterwards is not visible yet
            assert 'opsconsole_check_status{check="shared-check",component="api"} 1.0' in body
    finally:
        client_ = redis.Redis.from_url(redis_url)
        for key in client_.scan_iter(match=f"{prefix}:*"):
            client_.delete(key)


def test_metrics_after_backlog_and_batch_activity_in_another_process(subprocess_env, client):
    """Acceptance 1: what a worker process did shows on /metrics of this process."""
    script = """
from django.utils import timezone
from backlog.models import BacklogEntry
from batches.models import BatchOperation, BatchItem
now = timezone.now()
BacklogEntry.objects.create(source="crm", key="a", status="pending")
BacklogEntry.objects.create(source="crm", key="b", status="pending")
BacklogEntry.objects.create(source="crm", key="c", status="processed", processed_at=now)
# A batch finished the way a worker finishes one: its events are what the counters count.
from batches.executor import claim_chunk, record_outcomes
done = BatchOperation.objects.create(operation="http", creator="t", status="running",
    total_items=2, created_at=now, started_at=now - timezone.timedelta(seconds=7))
BatchItem.objects.create(batch=done, key="x", next_attempt_at=now)
BatchItem.objects.create(batch=done, key="y", next_attempt_at=now)
record_outcomes(done.pk, [(i, "ok", {}) for i in claim_chunk(done.pk, 2, 60, now)], now)
BatchOperation.objects.create(operation="http", creator="t", status="pending", total_items=1)
"""
    result = subprocess.run(
        manage("shell", "-c", script),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = samples(client.get("/metrics").content.decode())
    backlog = {
        labels: v for (name, labels), v in found.items() if name == "opsconsole_backlog_entries"
    }
    assert backlog[(("source", "crm"), ("status", "pending"))] == 2
    assert backlog[(("source", "crm"), ("status", "processed"))] == 1
    assert not found.get(("opsconsole_collector_errors", (("collector", "batches"),)))
    assert found[("batch_pending_operations", ())] == 1
    completed = [
        v
        for (name, labels), v in found.items()
        if name == "batch_operations_total" and ("status", "completed") in labels
    ]
    assert sum(completed) == 1
    assert found[("batch_processing_duration_seconds_count", ())] >= 1


# --- commands -------------------------------------------------------------------------------


def run_command(*args: str) -> tuple[int, str]:
    from io import StringIO

    out = StringIO()
    try:
        call_command(*args, stdout=out, stderr=out)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue()


def test_metrics_summary_is_a_readable_table():
    make_check("api-health", "critical", 812.5)
    code, out = run_command("metrics", "summary")
    assert code == 0
    assert out.splitlines()[0].split() == ["METRIC", "LABELS", "VALUE"]
    assert re.search(r"opsconsole_check_status\s+check=api-health, component=api\s+2", out)


def test_metrics_prometheus_prints_exposition_text():
    make_check("api-health", "ok", 5)
    code, out = run_command("metrics", "prometheus")
    assert code == 0
    found = samples(out)
    assert found[("opsconsole_check_value", (("check", "api-health"),))] == 5


def test_metrics_health_exits_0_when_healthy():
    make_check("api-health", "ok")
    code, out = run_command("metrics", "health")
    assert code == 0, out
    assert "Overall: OK" in out


def test_metrics_health_exits_1_on_warning_naming_the_finding():
    from django_q.brokers import get_broker

    make_check("api-health", "ok")
    broker = get_broker()  # the configured one: ORM, or Redis when REDIS_URL is set
    broker.delete_queue()
    for _ in range(12):
        broker.enqueue("not-a-real-task")
    try:
        code, out = run_command("metrics", "health")
    finally:
        broker.delete_queue()
    assert code == 1, out
    assert "[WARN] Queue backlog" in out and "12 tasks" in out
    assert "manage.py qcluster" in out  # what to do


def test_metrics_health_exits_2_on_critical_naming_the_finding():
    from django_q.models import Task

    make_check("api-health", "critical")
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(
                id=f"t{i:030d}",
                name=f"job-{i}",
                func="x.y",
                started=now,
                stopped=now,
                success=False,
                result="boom",
            )
            for i in range(6)
        ]
    )
    code, out = run_command("metrics", "health")
    assert code == 2, out
    assert "[CRIT] Queue failed jobs" in out and "6 in the last hour" in out
    assert "[CRIT] Checks" in out and "api-health" in out
    assert "[CRIT] Job error rate" in out


def test_metrics_health_names_a_stalled_scheduler():
    check = make_check("api-health", "ok")
    Check.objects.filter(pk=check.pk).update(last_run_at=timezone.now() - timedelta(minutes=10))
    code, out = run_command("metrics", "health")
    assert code == 2
    assert "[CRIT] Scheduler" in out and "qcluster" in out


def test_prometheus_rules_are_valid_yaml_referencing_exported_metrics():
    from monitoring.observability.rules import EXPORTED_METRICS

    code, out = run_command("prometheus_rules")
    assert code == 0
    document = yaml.safe_load(out)
    groups = {g["name"]: g for g in document["groups"]}
    assert set(groups) == {"batch_operations", "opsconsole"}
    alerts = {r["alert"]: r for g in groups.values() for r in g["rules"]}
    assert {
        "HighBatchFailureRate",
        "SlowBatchProcessing",
        "LargePendingQueue",
        "CheckCritical",
        "MonitoringStalled",
        "AlertUnacknowledged",
    } <= set(alerts)
    for rule in alerts.values():
        assert rule["expr"] and rule["for"] and rule["annotations"]["summary"]
        names = set(re.findall(r"\b((?:opsconsole|batch)_[a-z_]+)", rule["expr"]))
        assert names, rule
        for name in names:
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in EXPORTED_METRICS, f"{rule['alert']} references unknown metric {name}"
    # the monitoring families the rules use are really exported
    make_check("api-health", "ok")
    exported = {
        f.name for f in text_string_to_metric_families(run_command("metrics", "prometheus")[1])
    }
    for name in (
        "opsconsole_check_status",
        "opsconsole_monitoring_stalled",
        "opsconsole_queue_tasks",
    ):
        assert name in exported


def test_gunicorn_workers_share_one_snapshot(subprocess_env, redis_url):
    """Several gunicorn workers behind one scrape target serve the same snapshot."""
    import socket
    import sys
    import time
    from pathlib import Path

    import httpx
    import redis

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prefix = f"h8gunicorn{time.monotonic_ns()}"
    make_check("api-health", "ok")
    env = {
        **subprocess_env,
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": prefix,
        "METRICS_SNAPSHOT_SECONDS": "60",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        [
            gunicorn,
            "opsconsole.wsgi:application",
            "--workers",
            "3",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("gunicorn did not start")
                time.sleep(0.2)
        stamps = set()
        for _ in range(12):
            # a new connection each time, so different workers answer
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert response.status_code == 200
            found = samples(response.text)
            stamps.add(found[("opsconsole_metrics_snapshot_timestamp_seconds", ())])
            key = ("opsconsole_check_status", (("check", "api-health"), ("component", "api")))
            assert found[key] == 0
        assert len(stamps) == 1, f"workers built {len(stamps)} snapshots instead of sharing one"
    finally:
        server.terminate()
        server.wait(timeout=15)
        client_ = redis.Redis.from_url(redis_url)
        for key in client_.scan_iter(match=f"{prefix}:*"):
            client_.delete(key)


def test_scrapes_fall_back_to_a_local_snapshot_while_redis_is_down(client):
    import time

    from tests.conftest import closed_port

    dead = f"redis://127.0.0.1:{closed_port()}/0"
    caches_dead = {
        "default": {
            "BACKEND": "opsconsole.cache.ResilientRedisCache",
            "LOCATION": dead,
            "KEY_PREFIX": "h8",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    make_check("api-health", "critical")
    with override_settings(CACHES=caches_dead, METRICS_SNAPSHOT_SECONDS=15):
        started = time.monotonic()
        first = client.get("/metrics")
        assert time.monotonic() - started < 1.5  # no waiting for a lock nobody can hold
        assert first.status_code == 200
        assert (
            'opsconsole_check_status{check="api-health",component="api"} 2.0'
            in first.content.decode()
        )
        with CaptureQueriesContext(connection) as second:
            assert client.get("/metrics").status_code == 200
        assert second.captured_queries == []
