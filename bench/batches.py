"""Batch benchmark on PostgreSQL + Redis, bounded to a few minutes.

    .venv/bin/python bench/batches.py

Uses its own database (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_batches,
created if missing, batch tables emptied) and Redis DB (BENCH_REDIS_URL, default
redis://127.0.0.1:6379/13, flushed). Figures and targets:

1. a 10,000-item http batch, loopback receiver answering at once, 2 worker processes,
   BATCH_EXECUTOR_DELAY=0, BATCH_CHUNK_SIZE=100: >= 500 items/s end to end; and the same with
   the defaults (100 ms between chunks of 10: about 100 items/s per worker, by design);
2. creating a 100-item batch through the API: p95 <= 100 ms;
3. a list page at cursor depth 100,000 batches: <= 1.5x the first page.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Process
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_batches")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
BASE_ENV = {
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "BATCH_OPERATION_MAX_SIZE": "10000",
    "BATCH_OPERATION_TIMEOUT": "600",
    "LOG_LEVEL": "warning",
    "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
    "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
    "PYTHONPATH": str(ROOT),
}
sys.path.insert(0, str(ROOT))


def _clear_queue() -> None:
    """Drops the task list of this console's cluster, and nothing else: BENCH_REDIS_URL may
    point at a database that other people use."""
    import redis  # like main(): imported once the benchmark's environment is set
    from django_q.conf import Conf  # reads the settings: only after django.setup()

    redis.Redis.from_url(REDIS_URL).delete(f"django_q:{Conf.CLUSTER_NAME}:q")


def serve(port_file: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def ensure_database() -> None:
    import psycopg

    parts = urlsplit(DB_URL)
    name = parts.path.lstrip("/")
    admin = DB_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def start_cluster(**extra: str) -> subprocess.Popen:
    env = {**os.environ, **BASE_ENV, **extra}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "qcluster"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def run_batch_figure(url: str, items: int, limit_s: float, **cluster_env: str) -> tuple[float, str]:
    from django.conf import settings

    from batches.models import BatchOperation
    from batches.services import create_batch

    settings.BATCH_CHUNK_SIZE = int(
        cluster_env.get("BATCH_CHUNK_SIZE", 10)
    )  # how many tasks to queue
    cluster = start_cluster(Q_WORKERS="2", **cluster_env)
    try:
        time.sleep(3)  # the cluster is up and polling before the clock starts
        started = time.perf_counter()
        batch = create_batch(
            {
                "operation": "http",
                "creator": "bench",
                "items": list(range(items)),
                "payload": {"url": f"{url}/items/{{key}}", "timeout": 10},
            }
        )
        deadline = started + limit_s
        while time.perf_counter() < deadline:
            batch.refresh_from_db()
            if batch.is_final:
                break
            time.sleep(0.05)
        took = time.perf_counter() - started
        batch.refresh_from_db()
        done = batch.succeeded_items + batch.failed_items
        return done / took, f"{done}/{items} items in {took:.1f} s, status {batch.status}"
    finally:
        stop(cluster)
        BatchOperation.objects.all().delete()


def main() -> None:
    for key, value in BASE_ENV.items():
        os.environ[key] = value
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from batches.models import BatchOperation
    from opsconsole.models import ApiKey
    from opsconsole.paging import encode_cursor

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE batches_batchitem, batches_batchoperation")
    _clear_queue()

    port_file = f"/tmp/bench-batches-{os.getpid()}.port"
    receiver = Process(target=serve, args=(port_file,), daemon=True)
    receiver.start()
    while not Path(port_file).exists():
        time.sleep(0.05)
    url = f"http://127.0.0.1:{Path(port_file).read_text()}"
    results: list[tuple[str, str, str, bool]] = []
    try:
        rate, detail = run_batch_figure(
            url, 10_000, 120, BATCH_EXECUTOR_DELAY="0", BATCH_CHUNK_SIZE="100"
        )
        results.append(
            (
                "10k-item batch, delay 0, chunk 100",
                f"{rate:.0f} items/s ({detail})",
                ">= 500 items/s",
                rate >= 500,
            )
        )
        rate, detail = run_batch_figure(url, 2_000, 120)
        results.append(
            (
                "2k-item batch, defaults (100 ms, chunk 10)",
                f"{rate:.0f} items/s ({detail})",
                "~100 items/s per worker, by design",
                True,
            )
        )
    finally:
        receiver.terminate()
        Path(port_file).unlink(missing_ok=True)

    # 2. create through the API (the Django stack in-process, a write key, Redis enqueue included)
    _, raw = ApiKey.create(f"bench-{time.time_ns()}", "write")
    client = Client()
    body = {
        "operation": "http",
        "creator": "bench-api",
        "items": [f"k{i}" for i in range(100)],
        "payload": {"url": "https://api.example/items/{key}"},
    }
    timings = []
    for _ in range(200):
        start = time.perf_counter()
        response = client.post(
            "/api/batches/",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 201, response.content
    p95 = statistics.quantiles(timings, n=20)[18]
    results.append(
        (
            "create 100-item batch via API, p95",
            f"{p95:.1f} ms (median {statistics.median(timings):.1f})",
            "<= 100 ms",
            p95 <= 100,
        )
    )
    _clear_queue()

    # 3. keyset depth: 100,050 batches, page 1 against the page 100,000 rows deep
    from datetime import timedelta

    from django.utils import timezone

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE batches_batchitem, batches_batchoperation")
    base = timezone.now() - timedelta(days=30)
    for start in range(0, 100_050, 10_000):
        BatchOperation.objects.bulk_create(
            [
                BatchOperation(
                    operation="http",
                    creator="deep",
                    total_items=0,
                    created_at=base + timedelta(seconds=i),
                )
                for i in range(start, min(start + 10_000, 100_050))
            ],
            batch_size=5000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE batches_batchoperation")
    row = BatchOperation.objects.order_by("-created_at", "-id")[99_999]
    cursor_value = encode_cursor(row.created_at, row.id, opaque=True)

    def timed(path: str) -> float:
        runs = []
        for _ in range(30):
            start = time.perf_counter()
            response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {raw}")
            runs.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and len(response.json()["batches"]) == 50
        return statistics.median(runs)

    first = timed("/api/batches/creator/deep/?limit=50")
    deep = timed(f"/api/batches/creator/deep/?limit=50&cursor={cursor_value}")
    start = time.perf_counter()
    list(
        BatchOperation.objects.filter(creator="deep").order_by("-created_at", "-id")[
            100_000:100_050
        ]
    )
    offset_ms = (time.perf_counter() - start) * 1000
    results.append(
        (
            "list page at depth 100,000 vs page 1",
            f"{deep / first:.2f}x ({deep:.1f} ms vs {first:.1f} ms; "
            f"OFFSET would take {offset_ms:.0f} ms)",
            "<= 1.5x",
            deep / first <= 1.5,
        )
    )
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE batches_batchitem, batches_batchoperation")

    print()
    for name, figure, target, ok in results:
        print(f"{'PASS' if ok else 'MISS'}  {name:<44} {figure}   target {target}")


if __name__ == "__main__":
    main()
