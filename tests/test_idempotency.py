"""``Idempotency-Key`` on POST /api/batches/ and POST /api/backlog/."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import httpx
import pytest
import redis
import time_machine
from django.utils import timezone

from backlog.models import BacklogEntry
from batches.models import BatchOperation
from opsconsole.housekeeping import run_housekeeping
from opsconsole.models import IdempotentRequest


@pytest.fixture(autouse=True)
def _no_leftover_tasks():
    """Batches created here queue executor tasks; drop them from our own Redis DB only."""
    yield
    url = os.environ.get("REDIS_URL")
    if url:
        from django_q.conf import Conf

        redis.Redis.from_url(url, socket_timeout=2).delete(f"django_q:{Conf.CLUSTER_NAME}:q")


def _batch(creator: str = "billing", items: list[str] | None = None) -> dict:
    return {
        "operation": "http",
        "creator": creator,
        "items": items or ["a1", "a2"],
        "payload": {"url": "http://127.0.0.1:9/items/{key}"},
    }


@pytest.fixture
def write_headers(api_key_factory) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key_factory('write')}"}


def _post(client, path: str, body, headers: dict[str, str], key: str | None = None):
    extra = dict(headers)
    if key is not None:
        extra["Idempotency-Key"] = key
    return client.post(path, body, content_type="application/json", headers=extra)


def test_batch_retry_with_the_same_key_returns_the_first_batch_and_creates_nothing(
    client, write_headers
):
    first = _post(client, "/api/batches/", _batch(), write_headers, "order-42")
    assert first.status_code == 201
    second = _post(client, "/api/batches/", _batch(), write_headers, "order-42")
    assert second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert BatchOperation.objects.count() == 1


def test_without_a_key_every_post_creates_a_batch(client, write_headers):
    _post(client, "/api/batches/", _batch(), write_headers)
    _post(client, "/api/batches/", _batch(), write_headers)
    assert BatchOperation.objects.count() == 2
    assert not IdempotentRequest.objects.exists()


def test_the_same_key_with_a_different_body_is_422_and_changes_nothing(client, write_headers):
    _post(client, "/api/batches/", _batch(), write_headers, "k-1")
    other = _post(client, "/api/batches/", _batch(items=["zz"]), write_headers, "k-1")
    assert other.status_code == 422
    assert "different request" in other.json()["error"]
    assert BatchOperation.objects.count() == 1


def test_a_key_belongs_to_its_api_key(client, api_key_factory):
    one = {"Authorization": f"Bearer {api_key_factory('write')}"}
    two = {"Authorization": f"Bearer {api_key_factory('write')}"}
    a = _post(client, "/api/batches/", _batch(), one, "shared")
    b = _post(client, "/api/batches/", _batch(), two, "shared")
    assert a.json()["batchId"] != b.json()["batchId"]
    assert BatchOperation.objects.count() == 2


def test_a_rejected_request_does_not_use_up_its_key(client, write_headers):
    bad = _post(client, "/api/batches/", {"operation": "nope"}, write_headers, "retry-me")
    assert bad.status_code == 400
    broken = client.post(
        "/api/batches/",
        b"{not json",
        content_type="application/json",
        headers={**write_headers, "Idempotency-Key": "retry-me"},
    )
    assert broken.status_code == 400
    assert not IdempotentRequest.objects.exists()
    good = _post(client, "/api/batches/", _batch(), write_headers, "retry-me")
    assert good.status_code == 201


@pytest.mark.parametrize("key", ["", " padded ", "x" * 256, "naïve", "tab\tkey"])
def test_a_malformed_key_is_400_and_creates_nothing(client, write_headers, key):
    response = _post(client, "/api/batches/", _batch(), write_headers, key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["details"]
    assert BatchOperation.objects.count() == 0


def test_backlog_retry_with_the_same_key_adds_once(client, write_headers):
    body = [{"source": "users", "key": "42", "reason": "changed"}]
    first = _post(client, "/api/backlog/", body, write_headers, "sync-42")
    assert first.status_code == 201 and first.json()["added"] == 1
    BacklogEntry.objects.update(status="processed")  # processed meanwhile: a new POST adds
    again = _post(client, "/api/backlog/", body, write_headers, "sync-42")
    assert again.status_code == 201 and again.json() == first.json()
    assert BacklogEntry.objects.count() == 1


def test_keys_expire_after_the_retention(client, write_headers, settings):
    settings.IDEMPOTENCY_KEY_RETENTION_HOURS = 24
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = _post(client, "/api/batches/", _batch(), write_headers, "daily")
    with time_machine.travel(start + timedelta(hours=23), tick=False):
        assert run_housekeeping().removed == 0
        same = _post(client, "/api/batches/", _batch(), write_headers, "daily")
        assert same.json()["batchId"] == first.json()["batchId"]
    with time_machine.travel(start + timedelta(hours=25), tick=False):
        fresh = _post(client, "/api/batches/", _batch(), write_headers, "daily")
        assert fresh.json()["batchId"] != first.json()["batchId"]
    with time_machine.travel(start + timedelta(hours=50), tick=False):
        result = run_housekeeping()
    rule = next(r for r in result.results if r.name == "idempotency keys")
    assert rule.removed == 1
    assert not IdempotentRequest.objects.exists()


def test_concurrent_posts_with_one_key_create_one_batch(
    needs_postgres, transactional_db, live_server, api_key_factory
):
    headers = {"Authorization": f"Bearer {api_key_factory('write')}", "Idempotency-Key": "race"}
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def post() -> None:
        barrier.wait()
        answers.append(
            httpx.post(
                f"{live_server.url}/api/batches/", json=_batch(), headers=headers, timeout=30
            )
        )

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["batchId"] for a in answers}) == 1
    assert BatchOperation.objects.count() == 1
    assert IdempotentRequest.objects.count() == 1
