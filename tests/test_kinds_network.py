"""http, redis and database kinds against real servers on loopback."""

from __future__ import annotations

import time

import pytest

from monitoring.checks.runner import run_checks
from monitoring.models import Check, CheckStatus
from tests.conftest import closed_port, reply

pytestmark = pytest.mark.django_db(transaction=True)


def make(name: str, kind: str, config: dict, **fields) -> Check:
    return Check.objects.create(name=name, kind=kind, config=config, **fields)


def run_one(check: Check):
    (result,) = run_checks([check], claim=False)
    return result.run


def test_http_200_is_ok_with_latency_as_value(http_server):
    server = http_server(lambda r: reply(200, '{"status": "ok"}'))
    run = run_one(make("api", "http", {"url": f"{server.url}/health", "contains": "ok"}))
    assert run.status == CheckStatus.OK
    assert run.value is not None and 0 < run.value < 1000
    assert "HTTP 200" in run.message
    assert server.requests[0].path == "/health"


def test_http_wrong_status_is_critical_and_says_which(http_server):
    server = http_server(lambda r: reply(500, "boom"))
    run = run_one(make("api", "http", {"url": server.url}))
    assert run.status == CheckStatus.CRITICAL
    assert "HTTP 500, expected 200" in run.message


def test_http_missing_keyword_is_critical_and_names_it(http_server):
    server = http_server(lambda r: reply(200, "degraded"))
    run = run_one(make("api", "http", {"url": server.url, "contains": "healthy"}))
    assert run.status == CheckStatus.CRITICAL
    assert "does not contain 'healthy'" in run.message


def test_http_latency_thresholds(http_server):
    server = http_server(lambda r: (time.sleep(0.15), reply())[1])
    run = run_one(make("slow", "http", {"url": server.url}, warn=50, crit=5000))
    assert run.status == CheckStatus.WARNING
    assert "above warning threshold 50 ms" in run.message


def test_a_hanging_target_is_cut_off_while_the_others_finish_on_time(http_server, hanging_server):
    fast = http_server()
    checks = [make("hang", "http", {"url": hanging_server}, timeout_seconds=1.0)]
    checks += [make(f"fast-{i}", "http", {"url": fast.url}, timeout_seconds=5.0) for i in range(5)]
    started = time.monotonic()
    results = run_checks(checks, claim=False)
    elapsed = time.monotonic() - started
    by_name = {r.check.name: r for r in results}
    assert by_name["hang"].run.status == CheckStatus.CRITICAL
    assert "timed out after 1s" in by_name["hang"].run.message
    assert by_name["hang"].duration_ms < 1500
    assert elapsed < 1.5
    for i in range(5):
        assert by_name[f"fast-{i}"].run.status == CheckStatus.OK
        assert by_name[f"fast-{i}"].duration_ms < 500


def test_http_connection_refused_is_critical_unreachable():
    run = run_one(make("down", "http", {"url": f"http://127.0.0.1:{closed_port()}/"}))
    assert run.status == CheckStatus.CRITICAL
    assert run.message.startswith("unreachable")


def test_redis_reports_memory_percent(redis_url):
    import redis

    info = redis.Redis.from_url(redis_url).info("memory")
    run = run_one(make("cache", "redis", {"url": redis_url}))
    assert run.status == CheckStatus.OK
    limit = info["maxmemory"] or info["total_system_memory"]
    assert run.value == pytest.approx(info["used_memory"] * 100 / limit, abs=0.5)
    assert "memory" in run.message and run.details["latency_ms"] >= 0


def test_redis_memory_threshold_gives_warning(redis_url):
    run = run_one(make("cache", "redis", {"url": redis_url}, warn=0.0000001, crit=99.9))
    assert run.status == CheckStatus.WARNING


def test_redis_key_count_for_a_prefix(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"kindtest:{time.monotonic_ns()}:"
    client.mset({f"{prefix}{i}": 1 for i in range(7)})
    try:
        run = run_one(make("keys", "redis", {"url": redis_url, "metric": "keys", "prefix": prefix}))
        assert run.value == 7
    finally:
        client.delete(*[f"{prefix}{i}" for i in range(7)])


def test_redis_nothing_listening_is_critical_within_the_timeout():
    started = time.monotonic()
    run = run_one(
        make("cache", "redis", {"url": f"redis://127.0.0.1:{closed_port()}/0"}, timeout_seconds=1.0)
    )
    assert time.monotonic() - started < 1.5
    assert run.status == CheckStatus.CRITICAL
    assert "unreachable" in run.message


def test_database_default_alias_select_1():
    run = run_one(make("db", "database", {"alias": "default"}))
    assert run.status == CheckStatus.OK
    assert run.value is not None and run.value >= 0
    assert "SELECT 1" in run.message


def test_database_postgres_dsn(postgres_dsn):
    run = run_one(make("pg", "database", {"dsn": postgres_dsn}))
    assert run.status == CheckStatus.OK, run.message


def test_database_unreachable_dsn_is_critical_within_the_timeout():
    started = time.monotonic()
    run = run_one(
        make(
            "pg",
            "database",
            {"dsn": f"postgres://postgres@127.0.0.1:{closed_port()}/x"},
            timeout_seconds=2.0,
        )
    )
    assert time.monotonic() - started < 2.5
    assert run.status == CheckStatus.CRITICAL
    assert run.message.startswith("unreachable")


def test_secrets_are_masked_in_the_api_and_admin_view():
    from monitoring.kinds import mask_secrets

    masked = mask_secrets(
        {
            "url": "redis://:hunter2@cache:6379/0",
            "headers": {"Authorization": "Bearer x"},
            "password": "p",
        }
    )
    assert (
        "hunter2" not in str(masked)
        and "Bearer x" not in str(masked)
        and masked["password"] == "***"
    )
