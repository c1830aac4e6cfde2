"""Backlog benchmark.

1. Processing 20,000 entries with a loopback webhook receiver that answers at once, two
   ``manage.py backlog process`` worker processes: target >= 500 entries/s (PostgreSQL).
2. ``manage.py backlog status`` on 1,000,000 entries: target <= 300 ms (the command's own
   work, measured in-process after a warm-up; process start-up is not counted).
3. ``manage.py backlog add --file`` with 100,000 new keys, then the same file again (every
   key already pending): target <= 10 s each, in-process.

Runs against the database of DATABASE_URL, in a scratch database it creates and drops
(PostgreSQL: ``<name>_bench_backlog``; SQLite: a temporary file). Usage:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/backlog.py
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
PROCESS_ENTRIES = 20_000
STATUS_ENTRIES = 1_000_000
RATE_TARGET = 500.0
STATUS_TARGET_MS = 300.0
ADD_FILE_KEYS = 100_000
ADD_FILE_TARGET_S = 10.0


def scratch_database_url() -> tuple[str, callable]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        parsed = urlparse(url)
        name = f"{parsed.path.lstrip('/') or 'postgres'}_bench_backlog"
        admin = urlunparse(parsed._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        return urlunparse(parsed._replace(path=f"/{name}")), drop
    path = Path(tempfile.mkdtemp()) / "bench.sqlite3"
    return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)


class Receiver:
    """Answers 200 at once and counts deliveries per entry id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.ids.append(json.loads(body)["id"])
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sync"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> int:
    url, drop = scratch_database_url()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("LOG_FORMAT", "json")
    os.environ.setdefault("LOG_LEVEL", "warning")
    os.environ["DJANGO_SETTINGS_MODULE"] = "opsconsole.settings"
    sys.path.insert(0, str(ROOT))
    receiver = Receiver()
    os.environ["BACKLOG_HANDLERS"] = json.dumps({"bench": f"webhook:{receiver.url}"})
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from backlog import services
    from backlog.models import BacklogEntry

    results: list[tuple[str, str, str, bool]] = []
    try:
        call_command("migrate", verbosity=0)
        print(f"database: {connection.vendor} (scratch)")

        # 1. processing rate with two worker processes
        services.enqueue_many(services.EntrySpec("bench", f"k{n}") for n in range(PROCESS_ENTRIES))
        connection.close()
        command = [sys.executable, str(ROOT / "manage.py"), "backlog", "process"]
        started = time.monotonic()
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [worker.communicate(timeout=600)[0].strip() for worker in workers]
        elapsed = time.monotonic() - started
        for output in outputs:
            print(f"  worker: {output.splitlines()[0] if output else '(no output)'}")
        delivered = len(receiver.ids)
        duplicates = delivered - len(set(receiver.ids))
        rate = PROCESS_ENTRIES / elapsed
        results.append(
            (
                "processing, 2 workers",
                f"{rate:,.0f} entries/s ({PROCESS_ENTRIES:,} in {elapsed:.1f}s, "
                f"{delivered:,} delivered, {duplicates} twice)",
                f">= {RATE_TARGET:.0f}/s",
                rate >= RATE_TARGET and duplicates == 0 and delivered == PROCESS_ENTRIES,
            )
        )

        # 2. status on a million entries, mostly processed, as a long-lived backlog is
        more = STATUS_ENTRIES - PROCESS_ENTRIES
        t0 = time.monotonic()
        services.enqueue_many(
            services.EntrySpec(("users", "orders", "events")[n % 3], f"m{n}") for n in range(more)
        )
        BacklogEntry.objects.filter(source="users").update(
            status="processed", processed_at=django_now()
        )
        BacklogEntry.objects.filter(source="events", id__lt=600_000).update(
            status="processed", processed_at=django_now()
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE backlog_backlogentry")
        else:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        print(f"  filled {BacklogEntry.objects.count():,} entries in {time.monotonic() - t0:.0f}s")
        call_command("backlog", "status", stdout=io.StringIO())  # warm-up
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            call_command("backlog", "status", stdout=io.StringIO())
            timings.append((time.perf_counter() - t0) * 1000)
        best, median = min(timings), sorted(timings)[len(timings) // 2]
        results.append(
            (
                "backlog status, 1M entries",
                f"{median:.0f} ms median (best {best:.0f} ms)",
                f"<= {STATUS_TARGET_MS:.0f} ms",
                median <= STATUS_TARGET_MS,
            )
        )

        # 3. adding a file of 100,000 new keys, then the same file again (all already pending)
        keys = Path(tempfile.mkdtemp()) / "keys.txt"
        keys.write_text("\n".join(f"file-{n}" for n in range(ADD_FILE_KEYS)) + "\n")
        for label in ("new keys", "already pending"):
            t0 = time.perf_counter()
            call_command(
                "backlog", "add", "--file", str(keys), "--source", "bench", stdout=io.StringIO()
            )
            seconds = time.perf_counter() - t0
            results.append(
                (
                    f"add --file 100k, {label}",
                    f"{seconds:.1f} s",
                    f"<= {ADD_FILE_TARGET_S:.0f} s",
                    seconds <= ADD_FILE_TARGET_S,
                )
            )
        keys.unlink()
    finally:
        connection.close()
        receiver.server.shutdown()
        drop()

    print()
    for name, figure, target, ok in results:
        print(f"{name:<28} {figure:<70} target {target:<10} {'OK' if ok else 'MISSED'}")
    return 0 if all(ok for *_, ok in results) else 1


def django_now():
    from django.utils import timezone

    return timezone.now()


if __name__ == "__main__":
    sys.exit(main())
