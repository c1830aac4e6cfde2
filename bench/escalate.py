"""Benchmark: one ``escalate`` pass over many open alerts with due steps.

Targets: the pass takes <= 2 s over 1,000 alerts on SQLite, and the number of database
queries per pass does not grow with the number of alerts (measured at 100 and 1,000).
Runs on a fresh SQLite file in /tmp (BENCH_DATABASE_URL for a scratch PostgreSQL database;
never DATABASE_URL, since the benchmark deletes every alert) with a fast webhook receiver on
loopback. Usage: .venv/bin/python bench/escalate.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_tmp = tempfile.mkdtemp(prefix="bench-escalate-")
os.environ["DATABASE_URL"] = (
    os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{_tmp}/bench.sqlite3"
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")
os.environ.setdefault("LOG_LEVEL", "warning")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from monitoring.alerts.escalation import escalate_pass  # noqa: E402
from monitoring.models import Alert, Notification, NotificationChannel  # noqa: E402
from opsconsole.bulk import insert_rows  # noqa: E402

TARGET_SECONDS = 2.0


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.count += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def make_alerts(n: int) -> None:
    Notification.objects.all().delete()
    Alert.objects.all().delete()
    now = timezone.now()
    insert_rows(
        Alert,
        [
            {
                "dedup_key": f"bench:{n}:{i}",
                "component": "fleet",
                "title": f"node-{i} is critical",
                "message": "HTTP 503",
                "severity": "critical",
                "status": "open",
                "flapping": False,
                "occurrences": 1,
                "opened_at": now,
                "last_seen_at": now,
                "escalation_started_at": now,
                "acknowledged_by": "",
                "resolved_by": "",
                "ack_nonce": f"{i:016x}",
            }
            for i in range(n)
        ],
    )


def measure(n: int) -> tuple[int, float, int]:
    make_alerts(n)
    before = Receiver.count
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = escalate_pass()
        elapsed = time.perf_counter() - started
    assert result.sent == n, result.summary()
    return len(queries), elapsed, Receiver.count - before


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    call_command("migrate", verbosity=0)
    NotificationChannel.objects.all().delete()
    NotificationChannel.objects.create(
        name="bench-hook", kind="webhook", url=f"http://127.0.0.1:{server.server_address[1]}/hook"
    )
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
    results = {n: measure(n) for n in (100, 1000)}
    for n, (queries, elapsed, posts) in results.items():
        print(f"{n:>5} alerts: {queries} queries, {elapsed:.3f} s, {posts} webhook request(s)")
    q100, q1000 = results[100][0], results[1000][0]
    t1000 = results[1000][1]
    print(
        f"queries per pass at 100 vs 1,000 alerts: {q100} vs {q1000} "
        f"(target: equal) -> {'OK' if q100 == q1000 else 'MISSED'}"
    )
    print(
        f"pass over 1,000 alerts: {t1000:.3f} s (target <= {TARGET_SECONDS:.1f} s) -> "
        f"{'OK' if t1000 <= TARGET_SECONDS else 'MISSED'}"
    )
    server.shutdown()
    shutil.rmtree(_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
