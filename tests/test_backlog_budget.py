"""Backlog processing within its time budget: the deadline is checked per entry, claims are
sized to what is left of the budget and kept alive while their entries are handled, each
outcome is recorded as it happens, and every handler gets a stable idempotency key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from backlog import services
from backlog.handlers import Delivery, idempotency_key
from backlog.models import BacklogEntry, BacklogStatus
from opsconsole import timeouts
from tests.conftest import manage, reply, wait_for

pytestmark = pytest.mark.django_db

HANDLER_SECONDS = 0.25
CALLS: list[dict[str, Any]] = []
HERE = "tests.test_backlog_budget"


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def _note(entry, delivery: Delivery | None, **extra: Any) -> None:
    CALLS.append(
        {
            "key": entry.key,
            "idempotency_key": getattr(delivery, "idempotency_key", None),
            "attempt": getattr(delivery, "attempt", None),
            **extra,
        }
    )


def slow_handler(entry, delivery: Delivery | None = None) -> None:
    time.sleep(HANDLER_SECONDS)
    _note(entry, delivery)


def handlers(settings, handler: str, source: str = "users") -> None:
    settings.BACKLOG_HANDLERS = {source: f"{HERE}.{handler}"}


def queue(count: int, source: str = "users", prefix: str = "k") -> None:
    services.enqueue_many(services.EntrySpec(source, f"{prefix}{n:03d}") for n in range(count))


def by_status() -> dict[str, int]:
    counts = Counter(BacklogEntry.objects.values_list("status", flat=True))
    return {status.value: counts.get(status.value, 0) for status in BacklogStatus}


# --- the deadline -------------------------------------------------------------------------------


def test_slow_handler_and_short_budget_stop_in_time_and_handle_nothing_twice(settings, capsys):
    """16 entries of 0.25 s against a 1.5 s budget: the run stops within one handler call of
    the budget, records every entry it handled, and hands the rest back untouched."""
    handlers(settings, "slow_handler")
    queue(16)
    budget = 1.5
    started = time.monotonic()
    report = services.process(max_seconds=budget)
    stopped_after = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\n[backlog budget] budget {budget:.2f} s, handler {HANDLER_SECONDS:.2f} s/entry: "
            f"stopped after {stopped_after:.2f} s, {report.processed} handled"
        )
    assert stopped_after <= budget + HANDLER_SECONDS + 0.5
    counts = by_status()
    assert counts["processing"] == 0
    assert counts["processed"] == report.processed == len(CALLS) > 0
    assert counts["pending"] == 16 - report.processed
    # What was handed back is as it was: due, no attempt counted.
    left = BacklogEntry.objects.filter(status=BacklogStatus.PENDING)
    assert set(left.values_list("attempts", flat=True)) == {0}
    assert set(left.values_list("claim_token", flat=True)) == {""}

    services.process()
    assert by_status()["processed"] == 16
    assert Counter(call["key"] for call in CALLS) == {f"k{n:03d}": 1 for n in range(16)}


OBSERVED: list[dict[str, str]] = []


def recording_handler(entry, delivery: Delivery | None = None) -> None:
    """Looks at the entries handled before this one: each is already recorded."""
    earlier = [call["key"] for call in CALLS]
    OBSERVED.append(dict(BacklogEntry.objects.filter(key__in=earlier).values_list("key", "status")))
    _note(entry, delivery)
    if entry.key.endswith(("1", "5")):
        raise RuntimeError("receiver said no")


def test_each_outcome_is_recorded_as_it_happens(settings):
    handlers(settings, "recording_handler")
    OBSERVED.clear()
    queue(8)
    report = services.process()
    assert (report.processed, report.retrying) == (6, 2)
    assert len(OBSERVED) == 8
    for seen in OBSERVED:
        assert BacklogStatus.PROCESSING not in seen.values(), seen


def test_claims_are_sized_to_the_remaining_budget(settings):
    """With a 1 s handler timeout a 3 s budget claims at most 3 entries at first: a worker
    killed then holds no more than it could have handled."""
    settings.BACKLOG_WEBHOOK_TIMEOUT = 1.0
    handlers(settings, "counting_handler")
    queue(20)
    report = services.process(max_seconds=3)
    assert report.processed == 20
    assert CALLS[0]["held"] <= 3
    assert max(call["held"] for call in CALLS) <= services.CLAIM_CHUNK


def counting_handler(entry, delivery: Delivery | None = None) -> None:
    time.sleep(0.02)
    _note(entry, delivery, held=BacklogEntry.objects.filter(status="processing").count())


# --- claims kept alive --------------------------------------------------------------------------

TRAVELLER: list[Any] = []
RELEASED: list[int] = []


def outliving_handler(entry, delivery: Delivery | None = None) -> None:
    """Runs (in test time) for twice the claim timeout; meanwhile another worker looks for
    stale claims twice."""
    if entry.key == "slow" and not any(call["key"] == "slow" for call in CALLS):
        claim_timeout = float(entry_settings()["claim_timeout"])
        refresh = timeouts.backlog_claim_refresh()
        for _ in range(2):
            TRAVELLER[0].shift(timedelta(seconds=0.6 * claim_timeout))
            time.sleep(refresh + 0.7)  # real time: the claim keeper runs meanwhile
            RELEASED.append(services.release_stale_claims(timezone.now()))
    _note(entry, delivery)


def entry_settings() -> dict[str, Any]:
    from django.conf import settings

    return {"claim_timeout": settings.BACKLOG_CLAIM_TIMEOUT}


def test_a_claim_is_kept_alive_while_its_handler_outlives_the_claim_timeout(
    transactional_db, settings
):
    settings.BACKLOG_CLAIM_TIMEOUT = timeouts.minimum_backlog_claim_timeout()
    handlers(settings, "outliving_handler")
    RELEASED.clear()
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        TRAVELLER[:] = [traveller]
        services.enqueue("users", "slow")
        services.enqueue("users", "next")
        report = services.process()
    assert RELEASED == [0, 0]
    assert report.processed == 2 and report.released == 0
    assert Counter(call["key"] for call in CALLS) == {"slow": 1, "next": 1}
    assert by_status()["processed"] == 2


def test_a_stale_claim_refreshed_after_it_was_read_is_not_released(settings):
    """The release is guarded by the age it was selected for, not only by the token."""
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        services.enqueue("users", "1")
        [held] = services.claim(1, now=start)
        traveller.shift(timedelta(seconds=float(settings.BACKLOG_CLAIM_TIMEOUT) + 1))
        BacklogEntry.objects.filter(pk=held.pk).update(claimed_at=timezone.now())
        stale_cutoff = timezone.now() - timedelta(seconds=float(settings.BACKLOG_CLAIM_TIMEOUT))
        assert services._release(held, timezone.now(), "test", claimed_before=stale_cutoff) == 0
    held.refresh_from_db()
    assert held.status == BacklogStatus.PROCESSING


# --- idempotency keys for every handler -------------------------------------------------------


def keyword_handler(entry, *, delivery: Delivery) -> None:
    _note(entry, delivery)
    if delivery.attempt == 1:
        raise RuntimeError("first attempt fails")


def kwargs_handler(entry, **kwargs: Any) -> None:
    _note(entry, kwargs.get("delivery"))


def legacy_handler(entry) -> None:
    _note(entry, None, legacy=True)


def test_every_handler_gets_a_stable_idempotency_key_per_entry_and_attempt(settings):
    settings.BACKLOG_HANDLERS = {
        "kw": f"{HERE}.keyword_handler",
        "star": f"{HERE}.kwargs_handler",
        "old": f"{HERE}.legacy_handler",
    }
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        first = services.enqueue("kw", "1")
        services.enqueue("star", "1")
        services.enqueue("old", "1")
        report = services.process()
        assert (report.processed, report.retrying) == (2, 1)
        traveller.shift(services.retry_delay(1) + timedelta(seconds=1))
        assert services.process().processed == 1
    kw = [call for call in CALLS if call["key"] == "1" and call["attempt"] is not None]
    keyed = [call for call in kw if call["idempotency_key"] == idempotency_key(first)]
    assert [call["attempt"] for call in keyed] == [1, 2]  # same key, the attempt counts
    star = [c for c in CALLS if c["idempotency_key"] and c not in keyed]
    assert len(star) == 1 and star[0]["attempt"] == 1
    assert star[0]["idempotency_key"] != idempotency_key(first)
    assert [c for c in CALLS if c.get("legacy")] != []
    assert by_status()["processed"] == 3


def test_delivery_key_is_the_webhook_idempotency_key(settings, http_server):
    server = http_server()
    settings.BACKLOG_HANDLERS = {"users": f"webhook:{server.url}"}
    entry = services.enqueue("users", "7")
    services.process()
    [request] = server.requests
    assert request.headers["Idempotency-Key"] == idempotency_key(entry)
    assert request.json()["attempt"] == 1
    assert request.json()["idempotency_key"] == idempotency_key(entry)
    assert Delivery(idempotency_key(entry), 2, 10.0).attempt_key == f"{idempotency_key(entry)}-2"


# --- budget, task timeout and claim timeout from one place ------------------------------------


def test_scheduled_run_budget_fits_inside_the_task_timeout(settings):
    """The budget leaves room for one more handler call and its write inside the task
    timeout, so the task is never killed while it records."""
    budget = timeouts.backlog_run_budget()
    handler = float(settings.BACKLOG_WEBHOOK_TIMEOUT)
    task = settings.Q_CLUSTER["timeout"]
    assert 0 < budget
    assert budget + handler + timeouts.lock_wait() + timeouts.SLACK <= task
    assert settings.Q_CLUSTER["retry"] > task  # a running task is never delivered again
    refresh = timeouts.backlog_claim_refresh()
    claim = float(settings.BACKLOG_CLAIM_TIMEOUT)
    assert refresh + 2 * timeouts.lock_wait() + timeouts.SLACK <= claim


def test_scheduled_run_stops_within_its_derived_budget(settings):
    """A task timeout that leaves 1.5 s of budget: process_scheduled stops in time."""
    settings.BACKLOG_WEBHOOK_TIMEOUT = 0.5
    overhead = 0.5 + timeouts.lock_wait() + timeouts.SLACK
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 1.5 + overhead}
    assert timeouts.backlog_run_budget() == pytest.approx(1.5)
    handlers(settings, "slow_handler")
    queue(30)
    started = time.monotonic()
    result = services.process_scheduled()
    assert time.monotonic() - started <= 1.5 + HANDLER_SECONDS + 0.5
    assert result.startswith("processed ")
    assert by_status()["processing"] == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BACKLOG_WEBHOOK_TIMEOUT", "290", "task timeout"),
        ("BACKLOG_CLAIM_TIMEOUT", "30", "at least"),
    ],
)
def test_settings_that_break_the_relation_are_refused_at_start(tmp_path, variable, value, message):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"DATA_DIR": str(tmp_path), variable: value})
    result = subprocess.run(manage("check"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert variable in result.stderr and message in result.stderr, result.stderr[-2000:]


# --- a real qcluster killed mid-run -------------------------------------------------------------


def test_sigkill_mid_run_of_a_real_qcluster_loses_nothing_and_handles_nothing_twice(
    needs_postgres, subprocess_env, http_server, qcluster_factory, settings
):
    """A qcluster with a 20 s claim timeout runs the scheduled task against a receiver that
    takes 0.2 s per entry; it is killed (SIGKILL, whole group) after 8 deliveries. What it had
    handled is recorded; the rest is handled by the next runs (the held entries once their
    claim times out), each entry with one idempotency key."""
    from django_q.tasks import async_task

    claim_timeout = 20
    lock = threading.Lock()
    keys: dict[str, set[str]] = {}

    def receive(request):
        time.sleep(0.2)
        body = request.json()
        with lock:
            keys.setdefault(body["key"], set()).add(request.headers["Idempotency-Key"])
        return reply(200, "ok")

    server = http_server(receive)
    handlers_setting = {"users": f"webhook:{server.url}/sync"}
    settings.BACKLOG_HANDLERS = handlers_setting
    settings.BACKLOG_CLAIM_TIMEOUT = claim_timeout
    queue(40)
    cluster = qcluster_factory(
        {
            "BACKLOG_HANDLERS": json.dumps(handlers_setting),
            "BACKLOG_CLAIM_TIMEOUT": str(claim_timeout),
            "BACKLOG_WEBHOOK_TIMEOUT": "2",
        }
    )
    async_task("backlog.services.process_scheduled")
    wait_for(lambda: len(server.requests) >= 8, 60, "8 deliveries by the cluster")
    os.killpg(cluster.pid, signal.SIGKILL)
    cluster.wait(timeout=10)
    killed_at = timezone.now()
    time.sleep(0.5)  # a request in flight at the kill reaches the receiver or not

    delivered = len(server.requests)
    counts = by_status()
    # Everything the receiver answered before the kill is recorded: at most the one request
    # in flight at the kill is not.
    assert counts["processed"] >= delivered - 1
    held = counts["processing"]

    # Another worker right away: the dead worker's claims are younger than the claim timeout.
    first = services.process()
    assert first.released == 0
    assert by_status()["processing"] == held
    # Once the claim timeout has passed, they are released and handled.
    with time_machine.travel(killed_at + timedelta(seconds=claim_timeout + 1), tick=False):
        second = services.process()
    assert second.released == held
    assert by_status() == {"pending": 0, "processing": 0, "processed": 40, "failed": 0}

    with server.lock:
        deliveries = Counter(request.json()["key"] for request in server.requests)
    assert set(deliveries) == {f"k{n:03d}" for n in range(40)}
    twice = [key for key, n in deliveries.items() if n > 1]
    assert len(twice) <= 1, twice  # only the one in flight at the kill, if any
    assert all(len(seen) == 1 for seen in keys.values())  # and with its same key
    print(
        f"\n[backlog sigkill] {delivered} delivered before the kill, {held} held by the dead "
        f"worker and released after the {claim_timeout} s claim timeout, {len(twice)} delivered "
        "twice (same idempotency key)"
    )


@pytest.fixture
def qcluster_factory(subprocess_env, tmp_path):
    """Starts a real qcluster with extra environment; stopped after the test."""
    procs: list[subprocess.Popen] = []

    def start(extra: dict[str, str]) -> subprocess.Popen:
        log = open(tmp_path / f"qcluster-{len(procs)}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            manage("qcluster"),
            env={**subprocess_env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log = log
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc.log.close()
