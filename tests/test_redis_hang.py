"""A Redis that hangs (or is down) degrades the console and never hangs it.

The web tests start the real server with ``REDIS_URL`` pointing at a port that accepts
connections and never answers; the worker tests run a real ``qcluster`` against a private
``redis-server`` that is not there yet, then starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from django.core.cache.backends.redis import RedisCache
from django.test import Client, override_settings

from batches.models import BatchOperation
from monitoring.models import Check
from opsconsole.cache import ResilientRedisCache
from opsconsole.redis_guard import RedisUnavailable, redis_client
from tests.conftest import manage

LIMIT = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_url(hanging_server: str, db: int = 0) -> str:
    return hanging_server.replace("http://", "redis://") + f"/{db}"


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture
def hanging_console(subprocess_env, hanging_server) -> Iterator[str]:
    """The console (runserver) with REDIS_URL at a Redis that accepts and never answers."""
    port = _free_port()
    env = {**subprocess_env, "REDIS_URL": _redis_url(hanging_server), "REDIS_TIMEOUT": "1"}
    web = subprocess.Popen(
        manage("runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)
        yield base
    finally:
        _kill(web)


def _timed(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=30, **kwargs)
    return response, time.monotonic() - started


def test_pages_and_api_answer_within_3s_while_redis_hangs(
    hanging_console, staff_user, api_key_factory
):
    client = Client()
    client.force_login(staff_user)
    session = {"sessionid": client.cookies["sessionid"].value}
    key = api_key_factory("write")
    auth = {"Authorization": f"Bearer {key}"}
    Check.objects.create(name="api", kind="http", config={"url": "http://127.0.0.1:9/"})

    for path in ("/", "/alerts/"):
        response, took = _timed("GET", hanging_console + path, cookies=session)
        assert response.status_code == 200, (path, response.status_code)
        assert took < LIMIT, f"{path} took {took:.1f}s"
    response, took = _timed("GET", hanging_console + "/api/checks/", headers=auth)
    assert response.status_code == 200 and took < LIMIT, took
    assert [c["name"] for c in response.json()["checks"]] == ["api"]

    response, took = _timed("GET", hanging_console + "/api/status", headers=auth)
    assert took < LIMIT, took
    assert response.status_code == 503  # saying what is degraded
    components = response.json()["components"]
    assert components["cache"]["state"] == "down"
    assert "unreachable" in components["cache"]["detail"]
    assert components["database"]["state"] == "up"

    response, took = _timed("GET", hanging_console + "/metrics")
    assert response.status_code == 200 and took < LIMIT, took
    assert "opsconsole_redis_up 0.0" in response.text

    body = {"operation": "http", "creator": "hang", "items": ["a", "b"], "payload": {}}
    body["payload"] = {"url": "http://127.0.0.1:9/items/{key}"}
    retry = {**auth, "Idempotency-Key": "hang-7f3a"}
    first, took = _timed("POST", hanging_console + "/api/batches/", json=body, headers=retry)
    assert first.status_code == 201, first.text
    assert took < LIMIT, f"POST /api/batches/ took {took:.1f}s"
    second, took = _timed("POST", hanging_console + "/api/batches/", json=body, headers=retry)
    assert took < LIMIT and second.status_code == 201
    assert second.json()["batchId"] == first.json()["batchId"]
    assert BatchOperation.objects.filter(creator="hang").count() == 1
    # The broker could not take the task: the batch waits in the database for recovery.
    assert BatchOperation.objects.get(creator="hang").status == "pending"


def test_after_one_timeout_the_next_calls_fail_at_once(hanging_server):
    url = _redis_url(hanging_server, 3)
    client = redis_client(url, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    assert 0.4 < time.monotonic() - started < 1.5
    started = time.monotonic()
    for _ in range(5):
        with pytest.raises(RedisUnavailable, match="unreachable"):
            redis_client(url, timeout=0.5).llen("q")
    assert time.monotonic() - started < 0.1


def test_cache_misses_quickly_while_redis_hangs(hanging_server):
    cache = ResilientRedisCache(
        _redis_url(hanging_server, 4),
        {"OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}},
    )
    started = time.monotonic()
    for index in range(10):
        assert cache.get(f"k{index}", "default") == "default"
        cache.set(f"k{index}", 1)
        cache.set_many({"a": 1, "b": 2})
    assert time.monotonic() - started < 1.5


def test_cache_still_works_with_a_healthy_redis(redis_url):
    cache = ResilientRedisCache(redis_url, {"KEY_PREFIX": "h-redis-test"})
    assert isinstance(cache, RedisCache)
    cache.set_many({"one": 1, "two": 2}, timeout=30)
    assert cache.get_many(["one", "two"]) == {"one": 1, "two": 2}
    cache.delete_many(["one", "two"])


@override_settings(REDIS_TIMEOUT=0.5)
def test_redis_check_is_capped_by_redis_timeout(db, hanging_server):
    from monitoring.checks.prober import ProbeContext
    from monitoring.kinds import get_kind

    check = Check.objects.create(
        name="hang",
        kind="redis",
        config={"url": _redis_url(hanging_server), "metric": "memory"},
        timeout_seconds=10,
    )
    started = time.monotonic()
    observation = get_kind("redis").observe(check, ProbeContext(1))
    assert time.monotonic() - started < 1.5
    assert "timed out after 0.5s" in observation.error


@pytest.mark.parametrize("value", ["5", "abc", "3s", "-1"])
def test_redis_timeout_is_parsed_strictly(value):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["REDIS_TIMEOUT"] = value
    result = subprocess.run(manage("check"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "REDIS_TIMEOUT" in result.stderr


# --- the worker ----------------------------------------------------------------------------


def _start_redis(port: int, workdir: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.2).ping()
            return proc
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)


def _log_lines(path: str) -> list[dict]:
    lines = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"level": "RAW", "message": line})
    return lines


def test_qcluster_backs_off_logs_the_outage_once_and_recovers(subprocess_env, tmp_path):
    from django_q.models import Success

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {**subprocess_env, "REDIS_URL": url, "LOG_FORMAT": "json", "Q_WORKERS": "1"}
    log = tmp_path / "qcluster.log"
    server = None
    with open(log, "w") as out:
        cluster = subprocess.Popen(
            manage("qcluster"), env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        time.sleep(8)  # 16 guard cycles with Redis down
        assert cluster.poll() is None, "the cluster must wait for Redis, not exit"
        lines = _log_lines(str(log))
        errors = [entry for entry in lines if entry.get("level") in ("ERROR", "CRITICAL")]
        assert len(errors) == 1, [entry.get("message") for entry in errors]
        assert "unreachable" in errors[0]["message"]
        assert f"127.0.0.1:{port}/0" in errors[0]["message"]
        assert not any("Traceback" in json.dumps(entry) for entry in lines)

        server = _start_redis(port, str(tmp_path))
        subprocess.run(
            manage(
                "shell",
                "-c",
                "from django_q.tasks import async_task; "
                "async_task('math.floor', 2.5, task_name='after-outage')",
            ),
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not Success.objects.filter(name="after-outage").exists():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        assert Success.objects.get(name="after-outage").result == 2
        assert any("reachable again" in e.get("message", "") for e in _log_lines(str(log)))
    finally:
        _kill(cluster)
        if server is not None:
            _kill(server)
