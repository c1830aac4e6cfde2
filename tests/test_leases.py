"""Leases that outlast the waits inside them (opsconsole/timeouts.py), and a liveness probe
that does not depend on the workers."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from batches.executor import claim_chunk, lease_seconds, record_outcomes, recover
from batches.models import BatchItem, ItemStatus
from batches.operations import get_operation
from batches.services import create_batch
from monitoring.models import Check, CheckStatus
from opsconsole import timeouts

pytestmark = pytest.mark.django_db


def test_sqlite_connections_wait_the_busy_timeout_the_leases_are_derived_from():
    if connection.vendor != "sqlite":
        assert timeouts.lock_wait() == 0
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        (busy_ms,) = cursor.fetchone()
    assert busy_ms == timeouts.SQLITE_BUSY_TIMEOUT * 1000 == timeouts.lock_wait() * 1000
    assert timeouts.lease_margin() > timeouts.lock_wait()


def test_a_batch_chunk_that_waits_the_whole_lock_wait_to_record_keeps_its_lease(settings):
    """The chunk's items take their full timeout, then recording waits the longest lock wait:
    recovery running at that moment must not hand the items to another worker."""
    settings.BATCH_CHUNK_SIZE = 2
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        batch = create_batch(
            {"operation": "backlog", "creator": "t", "items": ["a", "b"], "payload": {}}
        )
        operation = get_operation("backlog")
        lease = lease_seconds(operation, batch.payload, 2)
        items = claim_chunk(batch.pk, 2, lease, timezone.now())
        assert len(items) == 2
        worst = 2 * operation.item_timeout(batch.payload) + timeouts.lock_wait()
        traveller.shift(timedelta(seconds=worst))
        assert recover(timezone.now())["released_items"] == 0
        assert record_outcomes(batch.pk, [(i, "ok", {}) for i in items], timezone.now()) == (2, 0)
    assert set(BatchItem.objects.values_list("status", flat=True)) == {ItemStatus.SUCCEEDED}


def test_a_batch_lease_still_ends_for_a_dead_worker(settings):
    settings.BATCH_CHUNK_SIZE = 2
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        batch = create_batch(
            {"operation": "backlog", "creator": "t", "items": ["a"], "payload": {}}
        )
        lease = lease_seconds(get_operation("backlog"), batch.payload, 2)
        claim_chunk(batch.pk, 2, lease, timezone.now())
        traveller.shift(timedelta(seconds=lease + 1))
        assert recover(timezone.now())["released_items"] == 1


def test_backlog_claims_are_refreshed_well_inside_the_claim_timeout(settings):
    claim = float(settings.BACKLOG_CLAIM_TIMEOUT)
    refresh = timeouts.backlog_claim_refresh()
    # A refresh that waited the lock, seen by a reader that waited the lock, is still fresh.
    assert refresh + 2 * timeouts.lock_wait() + timeouts.SLACK <= claim
    assert refresh >= timeouts.MIN_CLAIM_REFRESH


def test_sqlite_lock_wait_raises_the_shortest_claim_timeout():
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "OPTIONS": {"timeout": 30}}
    postgres = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}
    assert timeouts.minimum_backlog_claim_timeout(sqlite) == 2 * 30 + timeouts.SLACK + 2
    assert timeouts.minimum_backlog_claim_timeout(postgres) == timeouts.SLACK + 2
    assert timeouts.lease_margin(sqlite) == 30 + timeouts.SLACK
    with pytest.raises(Exception, match="BACKLOG_CLAIM_TIMEOUT"):
        timeouts.backlog_claim_refresh(30, sqlite)


# --- /healthz while the workers are down -------------------------------------------------------


def test_healthz_stays_up_while_workers_are_down(live_server):
    """No qcluster and checks that last ran long ago: /api/status reports the scheduler down
    (503, a monitoring signal), /healthz still answers 200 without touching the database."""
    Check.objects.create(
        name="stalled",
        kind="http",
        config={"url": "http://127.0.0.1:9/"},
        status=CheckStatus.OK,
        last_run_at=timezone.now() - timedelta(hours=3),
    )
    status = httpx.get(f"{live_server.url}/api/status", timeout=10)
    assert status.status_code == 503
    assert "scheduler" in status.json()["failing"]
    health = httpx.get(f"{live_server.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_healthz_makes_no_query(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert client.get("/healthz").status_code == 200
