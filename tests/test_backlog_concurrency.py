"""Two real ``backlog process`` processes against one real receiver: no entry delivered twice."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter

from backlog import services
from backlog.models import BacklogEntry, BacklogStatus
from tests.conftest import manage, reply


def run_two_workers(subprocess_env, http_server, entries: int) -> tuple[Counter, list[str]]:
    server = http_server(lambda request: reply(200, "ok"))
    services.enqueue_many(services.EntrySpec("users", f"user-{n}") for n in range(entries))
    env = {
        **subprocess_env,
        "BACKLOG_HANDLERS": json.dumps({"users": f"webhook:{server.url}/sync"}),
    }
    workers = [
        subprocess.Popen(
            manage("backlog", "process"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=180)
            assert worker.returncode == 0, err
            outputs.append(out)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    with server.lock:
        delivered = Counter(request.json()["id"] for request in server.requests)
    return delivered, outputs


def processed_by(outputs: list[str]) -> list[int]:
    return [int(re.search(r"processed (\d+)", out).group(1)) for out in outputs]


def test_two_workers_on_postgres_never_deliver_an_entry_twice(
    needs_postgres, subprocess_env, http_server
):
    delivered, outputs = run_two_workers(subprocess_env, http_server, 2000)
    assert len(delivered) == 2000
    assert max(delivered.values()) == 1, [k for k, n in delivered.items() if n > 1][:10]
    assert sum(processed_by(outputs)) == 2000
    assert BacklogEntry.objects.filter(status=BacklogStatus.PROCESSED).count() == 2000


def test_two_workers_share_the_work_on_any_database(subprocess_env, http_server):
    delivered, outputs = run_two_workers(subprocess_env, http_server, 300)
    assert len(delivered) == 300 and max(delivered.values()) == 1
    assert sum(processed_by(outputs)) == 300
    assert set(BacklogEntry.objects.values_list("status", flat=True)) == {BacklogStatus.PROCESSED}
