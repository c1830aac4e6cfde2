"""How long ``POST /api/backlog/`` with the maximum 10,000 entries holds SQLite's write lock.

    .venv/bin/python bench/backlog_post.py [--entries 10000] [--rounds 3]

SQLite has one writer at a time: while the POST writes, every other write (a heartbeat ping, a
check run, a claim) waits for it. gunicorn with 2 workers serves a fresh SQLite database on
loopback; while one worker answers the POST, the bench measures from the outside

- the lock: a probe connection opens ``BEGIN IMMEDIATE`` every 5 ms; its longest wait is the
  longest stretch for which someone else held the write lock;
- a concurrent ping: ``GET /ping/<uuid>`` every 20 ms to the other worker; its longest answer
  time is what a cron job's heartbeat waits.

Each round posts new keys (all inserted), then the same keys again (all already pending).
Target: the write lock held under 1 s and no ping waiting 1 s or more, in every round.
``--idempotency-key`` sends the header: the key is claimed in the same short write transaction.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from _server import bench_env, gunicorn, migrate_and_run

TARGET_SECONDS = 1.0

SETUP = """
from monitoring.kinds import get_kind
from monitoring.models import Check
from opsconsole.models import ApiKey
config = get_kind("heartbeat").validate_config({"period": "1h", "grace": "10m"})
check = Check.objects.create(name="bench-job", kind="heartbeat", config=config)
print(check.ping_uuid)
print(ApiKey.create("bench", scope="write")[1])
"""


def prepare(env: dict[str, str]) -> tuple[str, str]:
    out = migrate_and_run(env, SETUP)
    return out[-2], out[-1]


def post_entries(
    port: int, api_key: str, body: bytes, idempotency: bool = False
) -> tuple[int, float, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    if idempotency:
        headers["Idempotency-Key"] = secrets.token_hex(16)
    started = time.monotonic()
    conn.request("POST", "/api/backlog/", body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.monotonic() - started
    conn.close()
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = {"raw": payload[:200].decode(errors="replace")}
    return response.status, elapsed, answer


class Watchers:
    """The lock probe and the pinger, both running until ``stop``."""

    def __init__(self, database: Path, port: int, ping_uuid: str) -> None:
        self.database, self.port, self.ping_uuid = database, port, ping_uuid
        self.lock_waits: list[float] = []
        self.ping_waits: list[float] = []
        self.ping_errors: list[str] = []
        self.halt = threading.Event()
        self.threads = [
            threading.Thread(target=self._probe_lock, daemon=True),
            threading.Thread(target=self._ping, daemon=True),
        ]

    def __enter__(self) -> Watchers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(60)

    def _probe_lock(self) -> None:
        conn = sqlite3.connect(self.database, timeout=60, isolation_level=None)
        try:
            while not self.halt.is_set():
                started = time.monotonic()
                conn.execute("BEGIN IMMEDIATE")
                self.lock_waits.append(time.monotonic() - started)
                conn.execute("ROLLBACK")
                time.sleep(0.005)
        finally:
            conn.close()

    def _ping(self) -> None:
        request = (
            f"GET /ping/{self.ping_uuid} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        ).encode()
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                    sock.sendall(request)
                    chunks = []
                    while chunk := sock.recv(4096):
                        chunks.append(chunk)
                status_line = b"".join(chunks).split(b"\r\n", 1)[0]
                if not status_line.startswith(b"HTTP/1.1 200"):
                    self.ping_errors.append(status_line.decode(errors="replace")[:40])
            except OSError as exc:
                self.ping_errors.append(type(exc).__name__)
            self.ping_waits.append(time.monotonic() - started)
            time.sleep(0.02)


def run(args: argparse.Namespace, workdir: Path) -> bool:
    database = workdir / "bench.sqlite3"
    env = bench_env(f"sqlite:///{database}", workdir)
    ping_uuid, api_key = prepare(env)
    passed = True
    with gunicorn(env, workdir / "gunicorn.log", "--timeout", "120") as port:
        if port is None:
            return False
        # Warm-up: both workers import everything and open their connections.
        warm = json.dumps([{"source": "warmup", "key": str(i)} for i in range(10)]).encode()
        for _ in range(4):
            post_entries(port, api_key, warm)
        print(
            f"POST /api/backlog/ with {args.entries} entries on SQLite"
            f"{' (with an Idempotency-Key)' if args.idempotency_key else ''}; "
            f"target: write lock < {TARGET_SECONDS:.0f} s, concurrent ping < {TARGET_SECONDS:.0f} s"
        )
        for round_number in range(args.rounds):
            body = json.dumps(
                [
                    {"source": "bench", "key": f"r{round_number}-{i}", "reason": "bench"}
                    for i in range(args.entries)
                ]
            ).encode()
            for label in ("new keys", "already pending"):
                with Watchers(database, port, ping_uuid) as watch:
                    time.sleep(0.2)
                    status, elapsed, answer = post_entries(
                        port, api_key, body, args.idempotency_key
                    )
                    time.sleep(0.2)
                lock = max(watch.lock_waits, default=float("nan"))
                ping = max(watch.ping_waits, default=float("nan"))
                ok = (
                    status in (200, 201)
                    and lock < TARGET_SECONDS
                    and ping < TARGET_SECONDS
                    and not watch.ping_errors
                )
                passed = passed and ok
                counts = f"added {answer.get('added')}, already {answer.get('already_pending')}"
                errors = f", ping errors {watch.ping_errors[:3]}" if watch.ping_errors else ""
                print(
                    f"round {round_number + 1} {label:<16} HTTP {status} in {elapsed:6.2f} s "
                    f"({counts}); write lock held up to {lock:5.3f} s; "
                    f"longest ping {ping:5.3f} s ({len(watch.ping_waits)} pings){errors}   "
                    f"{'PASS' if ok else 'FAIL'}"
                )
    print(f"overall: {'PASS' if passed else 'FAIL'}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--entries", type=int, default=10_000, help="entries per request (default 10000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--idempotency-key",
        action="store_true",
        help="send a fresh Idempotency-Key with each request (its record shares the transaction)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-backlog-post-"))
    try:
        return 0 if run(args, workdir) else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
