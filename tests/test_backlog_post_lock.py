"""POST /api/backlog/ with the maximum 10,000 entries: all or nothing, the same answer as one add
per entry, and on SQLite a write lock held for under a second (bench/backlog_post.py measures
it against gunicorn)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from backlog import services
from backlog.api import MAX_ENTRIES_PER_REQUEST
from backlog.models import BacklogEntry, BacklogStatus
from monitoring.kinds import get_kind
from monitoring.models import Check, CheckRun

URL = "/api/backlog/"


def post(client, key: str, body) -> object:
    return client.post(
        URL, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def entries(count: int, prefix: str = "k") -> list[dict]:
    return [{"source": "users", "key": f"{prefix}{n}", "reason": "changed"} for n in range(count)]


@pytest.mark.django_db(transaction=True)
def test_10000_entries_hold_the_sqlite_write_lock_under_a_second_and_a_ping_waits_under_one(
    client, api_key_factory
):
    if connection.vendor != "sqlite":
        pytest.skip("the single write lock is SQLite's; PostgreSQL locks rows")
    key = api_key_factory("write")
    check = Check.objects.create(
        name="cron-job",
        kind="heartbeat",
        config=get_kind("heartbeat").validate_config({"period": "1h", "grace": "10m"}),
    )
    body = entries(MAX_ENTRIES_PER_REQUEST)
    warm_up = [{"source": "warmup", "key": str(n)} for n in range(5)]
    assert post(client, key, warm_up).status_code == 201  # imports, connections

    lock_waits: list[float] = []
    ping_waits: list[float] = []
    halt = threading.Event()

    def probe_lock() -> None:
        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=60, isolation_level=None)
        while not halt.is_set():
            started = time.monotonic()
            probe.execute("BEGIN IMMEDIATE")
            lock_waits.append(time.monotonic() - started)
            probe.execute("ROLLBACK")
            time.sleep(0.005)
        probe.close()

    def ping() -> None:
        pinger = Client()
        while not halt.is_set():
            started = time.monotonic()
            assert pinger.get(f"/ping/{check.ping_uuid}").status_code == 200
            ping_waits.append(time.monotonic() - started)
            time.sleep(0.02)
        connection.close()

    threads = [threading.Thread(target=probe_lock), threading.Thread(target=ping)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.1)
        for _ in range(2):  # new keys, then the same keys already pending
            response = post(client, key, body)
            assert response.status_code in (200, 201)
    finally:
        time.sleep(0.1)
        halt.set()
        for thread in threads:
            thread.join(60)

    assert BacklogEntry.objects.filter(source="users").count() == MAX_ENTRIES_PER_REQUEST
    assert response.json()["already_pending"] == MAX_ENTRIES_PER_REQUEST
    assert max(lock_waits) < 1.0, f"write lock held {max(lock_waits):.2f} s"
    assert max(ping_waits) < 1.0, f"a ping waited {max(ping_waits):.2f} s"
    assert CheckRun.objects.filter(check_obj=check).count() == len(ping_waits)


def test_one_bad_entry_among_10000_writes_nothing(client, api_key_factory):
    key = api_key_factory("write")
    body = entries(MAX_ENTRIES_PER_REQUEST - 1) + [{"source": "users", "key": ""}]
    response = post(client, key, body)
    assert response.status_code == 400
    assert set(response.json()["details"]) == {f"[{MAX_ENTRIES_PER_REQUEST - 1}].key"}
    assert BacklogEntry.objects.count() == 0


def test_the_answer_names_each_entry_in_order_with_pending_keys_and_repeats_not_created(
    client, api_key_factory
):
    key = api_key_factory("write")
    pending = services.enqueue("users", "a")
    services.enqueue("users", "done")
    BacklogEntry.objects.filter(key="done").update(status=BacklogStatus.PROCESSED)
    response = post(
        client,
        key,
        [
            {"source": "users", "key": "a"},
            {"source": "users", "key": " b ", "payload": {"x": 1}},
            {"source": "users", "key": "b"},
            {"source": "users", "key": "done"},
            {"source": "orders", "key": "a"},
        ],
    )
    assert response.status_code == 201
    answer = response.json()
    assert (answer["added"], answer["already_pending"]) == (3, 2)
    rows = answer["entries"]
    assert [(e["source"], e["key"], e["created"]) for e in rows] == [
        ("users", "a", False),
        ("users", "b", True),
        ("users", "b", False),
        ("users", "done", True),
        ("orders", "a", True),
    ]
    assert rows[0]["id"] == pending.pk and rows[1]["id"] == rows[2]["id"]
    assert all(e["status"] == "pending" for e in rows)
    stored = BacklogEntry.objects.get(pk=rows[1]["id"])
    assert (stored.key, stored.payload, stored.status) == ("b", {"x": 1}, "pending")
    assert BacklogEntry.objects.filter(source="users", key="done").count() == 2
