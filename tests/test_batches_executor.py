"""The executor against real loopback receivers: per-item outcomes, retries, cancel, time-out,
recovery of expired leases, and a real qcluster running a batch to completion."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from batches.executor import claim_chunk, record_outcomes, recover, run_batch
from batches.models import BatchItem, BatchOperation, BatchStatus, ItemStatus
from batches.services import create_batch
from tests.conftest import manage, reply


@pytest.fixture(autouse=True)
def fast_executor(settings):
    settings.BATCH_EXECUTOR_DELAY = 0
    settings.BATCH_RETRY_BACKOFF = 0.01
    settings.BATCH_CHUNK_SIZE = 10
    settings.BATCH_ITEM_MAX_ATTEMPTS = 3
    settings.BATCH_OPERATION_TIMEOUT = 20  # bounds every test here


def key_of(request) -> str:
    return request.path.rsplit("/", 1)[-1]


def http_batch(server, keys, now=None, **payload) -> BatchOperation:
    return create_batch(
        {
            "operation": "http",
            "creator": "tests",
            "items": keys,
            "payload": {
                "url": f"{server.url}/items/{{key}}",
                "body": {"id": "{key}"},
                "timeout": 2,
                **payload,
            },
        },
        now=now,
    )


def statuses(batch) -> dict[str, str]:
    return dict(batch.items.values_list("key", "status"))


def test_mixed_outcomes_retry_transient_errors_and_fail_permanent_ones_at_once(db, http_server):
    calls = collections.Counter()

    def handler(request):
        key = key_of(request)
        calls[key] += 1
        if key == "flaky" and calls[key] <= 2:
            return reply(503, "busy")
        if key == "bad":
            return reply(400, "no such thing")
        return reply(200, '{"ok": true}', "application/json")

    server = http_server(handler)
    batch = http_batch(server, ["ok1", "ok2", "flaky", "bad"])
    assert run_batch(str(batch.id)) == BatchStatus.COMPLETED_WITH_ERRORS
    batch.refresh_from_db()
    assert (batch.succeeded_items, batch.failed_items, batch.pending_items) == (3, 1, 0)
    assert batch.started_at and batch.finished_at and batch.finished_at >= batch.started_at
    flaky = batch.items.get(key="flaky")
    assert (flaky.status, flaky.attempts) == (ItemStatus.SUCCEEDED, 3)
    assert flaky.result["status"] == 200 and flaky.finished_at
    bad = batch.items.get(key="bad")
    assert (bad.status, bad.attempts) == (ItemStatus.FAILED, 1)
    assert bad.error.startswith("HTTP 400")
    # Every delivery of an item carries the same key, and the body has the key substituted.
    flaky_requests = [r for r in server.requests if key_of(r) == "flaky"]
    assert {r.headers["Idempotency-Key"] for r in flaky_requests} == {f"{batch.id}:flaky"}
    assert flaky_requests[0].json() == {"id": "flaky"} and flaky_requests[0].method == "POST"


def test_retry_reruns_only_the_failed_items(db, http_server):
    broken = {"b", "d"}
    server = http_server(lambda r: reply(422) if key_of(r) in broken else reply(201))
    batch = http_batch(server, ["a", "b", "c", "d"])
    run_batch(str(batch.id))
    batch.refresh_from_db()
    assert batch.status == BatchStatus.COMPLETED_WITH_ERRORS and batch.failed_items == 2
    broken.clear()
    server.requests.clear()
    assert batch.retry_failed() == 2
    assert (
        batch.status == BatchStatus.PENDING
        and batch.failed_items == 0
        and batch.succeeded_items == 2
    )
    assert run_batch(str(batch.id)) == BatchStatus.COMPLETED
    assert sorted(key_of(r) for r in server.requests) == ["b", "d"]
    batch.refresh_from_db()
    assert (batch.succeeded_items, batch.failed_items) == (4, 0)
    assert batch.retry_failed() == 0  # nothing left to retry


def test_all_items_failing_ends_failed_and_retries_stop_at_max_attempts(db, http_server):
    server = http_server(lambda r: reply(503, "down"))
    batch = http_batch(server, ["x", "y"])
    assert run_batch(str(batch.id)) == BatchStatus.FAILED
    assert len(server.requests) == 6
    item = batch.items.get(key="x")
    assert item.attempts == 3 and "after 3 attempts" in item.error


def test_timeouts_are_retried_and_reported(db, hanging_server):
    batch = create_batch(
        {
            "operation": "http",
            "creator": "t",
            "items": ["slow"],
            "payload": {"url": f"{hanging_server}/{{key}}", "timeout": 0.2},
        }
    )
    assert run_batch(str(batch.id)) == BatchStatus.FAILED
    item = batch.items.get()
    assert item.attempts == 3 and "timed out" in item.error


def test_cancel_stops_the_batch_before_its_next_chunk(transactional_db, http_server, settings):
    settings.BATCH_CHUNK_SIZE = 2
    holder: dict[str, str] = {}

    def handler(request):
        if len(holder) == 1:
            holder["cancelled"] = "yes"
            try:
                BatchOperation.objects.get(pk=holder["id"]).cancel()
            finally:
                connection.close()
        return reply(200)

    server = http_server(handler)
    batch = http_batch(server, [f"k{i}" for i in range(10)])
    holder["id"] = str(batch.id)
    assert run_batch(str(batch.id)) == BatchStatus.CANCELLED
    batch.refresh_from_db()
    # The chunk in flight finished and was recorded; nothing after it was sent.
    assert len(server.requests) == 2
    assert batch.succeeded_items == 2 and batch.failed_items == 0
    assert list(statuses(batch).values()).count(ItemStatus.CANCELLED) == 8
    assert batch.finished_at is not None and batch.pending_items == 0


def test_timeout_fails_the_remaining_items_as_timed_out(db, http_server, settings):
    settings.BATCH_CHUNK_SIZE = 2
    settings.BATCH_OPERATION_TIMEOUT = 0.6

    def handler(request):
        time.sleep(0.15)
        return reply(200)

    server = http_server(handler)
    batch = http_batch(server, [f"k{i}" for i in range(20)])
    status = run_batch(str(batch.id))
    batch.refresh_from_db()
    assert status == BatchStatus.COMPLETED_WITH_ERRORS
    assert 0 < batch.succeeded_items < 20
    assert batch.succeeded_items + batch.failed_items == 20
    assert set(batch.items.filter(status=ItemStatus.FAILED).values_list("error", flat=True)) == {
        "timed out"
    }
    assert "timed out" in batch.error
    assert len(server.requests) == batch.succeeded_items


def test_a_worker_whose_lease_expired_records_nothing_and_recovery_requeues(db, http_server):
    server = http_server(lambda r: reply(200))
    start = timezone.now()
    batch = http_batch(server, ["a", "b", "c"], now=start - timedelta(minutes=2))
    # A worker claimed everything a minute ago with a 30 s lease, and died holding it.
    dead = claim_chunk(batch.id, 10, 30, start - timedelta(seconds=60))
    assert len(dead) == 3
    assert recover(start - timedelta(seconds=40))["released_items"] == 0  # lease still live then
    result = recover(start)
    assert result["released_items"] == 3 and result["requeued_batches"] == 1
    assert set(statuses(batch).values()) == {ItemStatus.PENDING}
    assert run_batch(str(batch.id)) == BatchStatus.COMPLETED
    # The dead worker comes back and tries to record its stale chunk: ignored.
    assert record_outcomes(
        batch.id, [(item, "ok", {"late": True}) for item in dead], timezone.now()
    ) == (0, 0)
    batch.refresh_from_db()
    assert (batch.succeeded_items, batch.failed_items) == (3, 0)
    assert all(r is None or "late" not in r for r in batch.items.values_list("result", flat=True))


def test_backlog_operation_adds_each_item_to_the_backlog(db):
    services = pytest.importorskip("backlog.services", reason="backlog.services is not there yet")
    from backlog.models import BacklogEntry

    batch = create_batch(
        {
            "operation": "backlog",
            "creator": "t",
            "items": ["u1", "u2"],
            "payload": {"source": "profiles", "reason": "resync"},
        }
    )
    assert run_batch(str(batch.id)) == BatchStatus.COMPLETED
    assert services is not None
    entries = BacklogEntry.objects.filter(source="profiles").order_by("key")
    assert [e.key for e in entries] == ["u1", "u2"]
    assert batch.items.get(key="u1").result["backlog_entry"] == entries[0].pk


def test_a_real_qcluster_runs_a_batch_created_through_the_api_to_completion(
    transactional_db, client, api_key_factory, http_server, subprocess_env
):
    lock = threading.Lock()
    seen: set[str] = set()

    def handler(request):
        with lock:
            seen.add(request.headers["Idempotency-Key"])
        return reply(200, '{"applied": true}', "application/json")

    server = http_server(handler)
    key = api_key_factory("write")
    body = {
        "operation": "http",
        "creator": "qcluster-test",
        "items": list(range(25)),
        "payload": {"url": f"{server.url}/items/{{key}}", "timeout": 5},
    }
    import json

    response = client.post(
        "/api/batches/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "pending" and created["totalItems"] == 25
    env = {**subprocess_env, "BATCH_EXECUTOR_DELAY": "0", "Q_WORKERS": "1"}
    proc = subprocess.Popen(
        manage("qcluster"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 40
        batch = BatchOperation.objects.get(pk=created["batchId"])
        while time.monotonic() < deadline and not batch.is_final:
            time.sleep(0.3)
            batch.refresh_from_db()
        assert batch.status == BatchStatus.COMPLETED, batch.status
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    detail = client.get(
        f"/api/batches/{created['batchId']}/", HTTP_AUTHORIZATION=f"Bearer {key}"
    ).json()
    assert detail["succeededItems"] == 25 and detail["pendingItems"] == 0
    assert all(i["status"] == "succeeded" and i["result"]["status"] == 200 for i in detail["items"])
    assert len(seen) == 25


def test_an_item_whose_worker_dies_every_time_fails_instead_of_looping(db, http_server):
    server = http_server(lambda r: reply(200))
    start = timezone.now()
    batch = http_batch(server, ["poison", "fine"], now=start - timedelta(minutes=10))
    BatchItem.objects.filter(batch=batch, key="fine").update(
        status=ItemStatus.SUCCEEDED, finished_at=start
    )
    BatchOperation.objects.filter(pk=batch.pk).update(succeeded_items=1, status=BatchStatus.RUNNING)
    for minutes in (9, 8, 7, 6, 5):  # five workers die holding it (max attempts 3 + 2)
        claim_chunk(batch.id, 10, 30, start - timedelta(minutes=minutes))
        recover(start - timedelta(minutes=minutes) + timedelta(seconds=45))
    poison = batch.items.get(key="poison")
    assert (poison.status, poison.attempts) == (ItemStatus.FAILED, 5)
    assert "worker was lost" in poison.error
    batch.refresh_from_db()
    assert batch.status == BatchStatus.COMPLETED_WITH_ERRORS and (
        batch.succeeded_items,
        batch.failed_items,
    ) == (1, 1)
    assert server.requests == []
