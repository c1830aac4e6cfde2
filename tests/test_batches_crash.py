"""Crash safety on PostgreSQL + Redis: workers killed with SIGKILL mid-batch, and a broker that is
down when the batch is created. Nothing is lost and a receiver that honours Idempotency-Key
applies each item exactly once."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import threading
import time
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone

from batches.executor import recover
from batches.models import BatchOperation, BatchStatus, ItemStatus
from batches.services import create_batch
from tests.conftest import closed_port, manage, reply

pytestmark = pytest.mark.postgres


class IdempotentReceiver:
    """Applies an item once per Idempotency-Key and answers repeats from its record.

    At each of ``kill_points`` (counts of deliveries) it holds every request in flight until
    the test has killed the cluster: the kill lands in the middle of a chunk whose items were
    applied here but not yet recorded by the worker.
    """

    def __init__(self, kill_points: tuple[int, ...] = ()):
        self.cond = threading.Condition()
        self.applied: collections.Counter[str] = collections.Counter()
        self.answered: dict[str, bytes] = {}
        self.keys_seen: dict[str, set[str]] = collections.defaultdict(set)
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.kill_points = list(kill_points)
        self.total = 0
        self.kills_requested = 0
        self.kills_done = 0

    def __call__(self, request):
        item = request.path.rsplit("/", 1)[-1]
        idem = request.headers.get("Idempotency-Key", "")
        with self.cond:
            self.total += 1
            self.deliveries[item] += 1
            self.keys_seen[item].add(idem)
            if idem not in self.answered:
                self.applied[item] += 1
                self.answered[idem] = f'{{"applied": "{item}"}}'.encode()
            answer = self.answered[idem]
            if self.kill_points and self.total >= self.kill_points[0]:
                self.kill_points.pop(0)
                self.kills_requested += 1
                self.cond.notify_all()
            wanted = self.kills_requested
            if wanted > self.kills_done:
                self.cond.wait_for(lambda: self.kills_done >= wanted, timeout=15)
        return reply(200, answer, "application/json")

    def wait_for_kill_point(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: self.kills_requested > self.kills_done, timeout=timeout
            )

    def killed(self) -> None:
        with self.cond:
            self.kills_done += 1
            self.cond.notify_all()


@pytest.fixture
def redis_db(redis_url):
    import redis

    # Only the task list of this run's cluster: the database may hold other people's keys.
    from django_q.conf import Conf  # reads the settings when imported

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    client.queue_key = f"django_q:{Conf.CLUSTER_NAME}:q"
    client.delete(client.queue_key)
    return client


def start_cluster(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        manage("qcluster"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group: the cluster's workers die with it, as in a machine crash."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def recover_as_if_leases_lapsed(batch: BatchOperation) -> dict[str, int]:
    # The killed worker's leases run for the item timeout plus a margin; instead of sleeping
    # through them, recovery runs a minute later on the clock (later than its previous run).
    batch.refresh_from_db()
    with time_machine.travel(
        max(timezone.now(), batch.heartbeat_at) + timedelta(seconds=60), tick=False
    ):
        return recover()


def recover_until_picked_up(batch: BatchOperation, seconds: float = 30) -> int:
    """Runs recovery, as the every-minute job would, until a worker has taken the batch.

    The Redis broker is at most once: a task pushed while Redis still counts a killed
    worker's blocked read as a listener goes to that dead connection and is lost. Recovery
    runs again, and the batch is queued again, until a live worker moves its heartbeat.
    """
    released = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        released += recover_as_if_leases_lapsed(batch)["released_items"]
        marker = BatchOperation.objects.get(pk=batch.pk).heartbeat_at
        wait_until = time.monotonic() + 3
        while time.monotonic() < wait_until:
            batch.refresh_from_db()
            if batch.heartbeat_at != marker or batch.is_final:
                return released
            time.sleep(0.05)
    raise AssertionError("no worker took the batch")


def wait_final(batch: BatchOperation, seconds: float) -> BatchOperation:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch.refresh_from_db()
        if batch.is_final:
            break
        time.sleep(0.2)
    return batch


def test_sigkilled_workers_lose_no_item_and_apply_each_once(
    needs_postgres, transactional_db, redis_db, http_server, subprocess_env, settings
):
    settings.BATCH_OPERATION_MAX_SIZE = 500
    receiver = IdempotentReceiver(kill_points=(55, 145, 235, 325, 415))
    server = http_server(receiver)
    keys = [f"item-{i}" for i in range(500)]
    batch = create_batch(
        {
            "operation": "http",
            "creator": "crash-test",
            "items": keys,
            "payload": {"url": f"{server.url}/apply/{{key}}", "timeout": 5},
        }
    )
    env = {
        **subprocess_env,
        "BATCH_EXECUTOR_DELAY": "0.02",
        "BATCH_CHUNK_SIZE": "10",
        "Q_WORKERS": "1",
    }
    kills = 0
    released = 0
    proc = None
    try:
        proc = start_cluster(env)
        while kills < 5:
            assert receiver.wait_for_kill_point(30), "the cluster made no progress"
            kill(proc)
            proc = None
            receiver.killed()
            batch.refresh_from_db()
            assert not batch.is_final, f"the batch finished before kill {kills + 1}"
            assert batch.items.filter(status=ItemStatus.RUNNING).exists(), "no chunk was in flight"
            kills += 1
            proc = start_cluster(env)
            released += recover_until_picked_up(batch)
        batch = wait_final(batch, 60)
    finally:
        receiver.killed()
        if proc is not None:
            kill(proc)
    assert kills == 5
    assert batch.status == BatchStatus.COMPLETED, (
        batch.status,
        batch.succeeded_items,
        batch.failed_items,
    )
    assert (batch.succeeded_items, batch.failed_items, batch.total_items) == (500, 0, 500)
    assert set(batch.items.values_list("status", flat=True)) == {ItemStatus.SUCCEEDED}
    # Exactly once at the receiver, whatever was delivered twice.
    assert sorted(receiver.applied) == sorted(keys)
    assert set(receiver.applied.values()) == {1}
    for key in keys:
        assert receiver.keys_seen[key] == {f"{batch.id}:{key}"}
    assert batch.finished_at and batch.started_at
    redelivered = sum(1 for count in receiver.deliveries.values() if count > 1)
    assert released >= 5 and redelivered >= 5, (released, redelivered)
    print(
        f"{kills} kills, {released} leases released, "
        f"{redelivered} items delivered again, applied once"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_batch_created_while_the_broker_is_down_runs_once_it_is_back(
    needs_postgres, transactional_db, redis_db, http_server, subprocess_env, api_key_factory
):
    receiver = IdempotentReceiver()
    server = http_server(receiver)
    key = api_key_factory("write")
    port = _free_port()
    api_env = {**subprocess_env, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/13"}
    web = subprocess.Popen(
        manage("runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"),
        env=api_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/batches/",
            json={
                "operation": "http",
                "creator": "broker-down",
                "items": list(range(30)),
                "payload": {"url": f"{server.url}/apply/{{key}}", "timeout": 2},
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )
        assert response.status_code == 201, response.text
        batch = BatchOperation.objects.get(pk=response.json()["batchId"])
        assert batch.status == BatchStatus.PENDING
        assert redis_db.llen(redis_db.queue_key) == 0, "nothing could reach the stopped broker"

        cluster = start_cluster({**subprocess_env, "BATCH_EXECUTOR_DELAY": "0"})
        time.sleep(1)
        batch.refresh_from_db()
        assert batch.status == BatchStatus.PENDING, "no task existed, so no worker could start it"
        recover_until_picked_up(batch)
        batch = wait_final(batch, 30)
    finally:
        kill(web)
        if cluster is not None:
            kill(cluster)
    assert batch.status == BatchStatus.COMPLETED and batch.succeeded_items == 30
    assert set(receiver.applied) == {str(i) for i in range(30)}
    assert set(receiver.applied.values()) == {1}
