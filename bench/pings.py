"""Heartbeat ping throughput: gunicorn with 2 workers on loopback, a fresh database, 20 s of pings.

    .venv/bin/python bench/pings.py [--seconds 20] [--concurrency 8] [--checks 20] [--sqlite-only]

Runs on SQLite, then on PostgreSQL when one answers at BENCH_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
Prints pings/s beside the SQL statements one healthy ping costs (the whole request through the
middleware, BEGIN and COMMIT included) and the server's CPU per ping (user + system time of
the gunicorn processes over the measured run, divided by the pings answered), then the CPU of
the same pings through the same middleware in one process without a server, a figure that a
busy machine disturbs less; and the load average, which says how busy the machine was.
Targets: at least 300 pings/s with no error responses; at most 4 statements and, on SQLite,
2.2 ms of server CPU per ping.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _server import bench_env, django_output, gunicorn, migrate_and_run, scratch_postgres

TARGET = 300.0
STATEMENTS_TARGET = 4
CPU_MS_TARGET = 2.2  # on SQLite

# One healthy ping (after a first one that turns the check ok) through the whole stack, its
# statements counted: what each ping of the measured run costs the database.
COUNT_STATEMENTS = """
import sys
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
path = f"/ping/{sys.argv[-1]}"
client = Client(HTTP_HOST="127.0.0.1")
client.get(path)
with CaptureQueriesContext(connection) as queries:
    assert client.get(path).status_code == 200
print(len(queries.captured_queries))
"""

# The same pings through the whole middleware stack in one process, no server around it: CPU
# per ping less sensitive to a busy machine than the server's (no sockets, no scheduling).
IN_PROCESS = """
import io, sys, time
from django.core.handlers.wsgi import WSGIHandler
app = WSGIHandler()
uuids = sys.argv[-1].split(",")
body = b"backup done: 1234 files"
def ping(i):
    post = i % 2 == 1
    environ = {
        "REQUEST_METHOD": "POST" if post else "GET", "PATH_INFO": f"/ping/{uuids[i % len(uuids)]}",
        "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(body if post else b""), "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body)) if post else "", "CONTENT_TYPE": "text/plain",
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status = []
    result = app(environ, lambda s, h, e=None: status.append(s))
    b"".join(result)
    result.close()
    assert status[0].startswith("200"), status
for i in range(200):
    ping(i)
count = 2000
started = time.process_time()
for i in range(count):
    ping(i)
print((time.process_time() - started) * 1000 / count)
"""

SETUP_CHECKS = """
import sys
from monitoring.kinds import get_kind
from monitoring.models import Check
config = get_kind("heartbeat").validate_config({"period": "1h", "grace": "10m"})
for i in range(int(sys.argv[-1])):
    check = Check.objects.create(name=f"bench-job-{i}", kind="heartbeat", config=config)
    print(check.ping_uuid)
"""


COUNT_RUNS = "from monitoring.models import CheckRun; print(CheckRun.objects.count())"


def prepare(env: dict[str, str], checks: int) -> list[str]:
    return migrate_and_run(env, SETUP_CHECKS, str(checks))


def server_cpu_seconds(port: int) -> float:
    """User + system CPU of the gunicorn serving ``port`` (its master and workers), each
    process counted once: the workers carry the master's command line, so they are found both
    on their own and as its children (counting both doubled the figure)."""
    members: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if f"127.0.0.1:{port}" in " ".join(proc.info["cmdline"] or []):
            for member in [proc, *proc.children(recursive=True)]:
                members[member.pid] = member
    total = 0.0
    for member in members.values():
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def drive(port: int, uuids: list[str], seconds: float, concurrency: int) -> dict[str, float]:
    """Pings from ``concurrency`` threads for ``seconds``, one request per connection (as cron)."""
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    # Requests are prebuilt bytes on a raw socket: the client shares the two cores with the
    # server, and http.client's header building and parsing would take a visible share of them.
    body = b"backup done: 1234 files"
    requests = []
    for i, ping_uuid in enumerate(uuids):
        if i % 2:
            head = (
                f"POST /ping/{ping_uuid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            requests.append(head.encode() + body)
        else:
            head = f"GET /ping/{ping_uuid} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            requests.append(head.encode())

    def client(worker: int) -> None:
        mine: list[float] = []
        n = worker
        while time.monotonic() < stop_at:
            request = requests[n % len(requests)]
            n += concurrency
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(request)
                    chunks = []
                    while chunk := sock.recv(4096):
                        chunks.append(chunk)
                status_line = b"".join(chunks).split(b"\r\n", 1)[0]
                if not status_line.startswith(b"HTTP/1.1 200"):
                    with lock:
                        errors.append(status_line.decode(errors="replace")[:40] or "empty response")
                    continue
            except OSError as exc:
                with lock:
                    errors.append(type(exc).__name__)
                continue
            mine.append(time.monotonic() - started)
        with lock:
            latencies.extend(mine)

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "ok": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "elapsed": elapsed,
        "rate": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0,
    }


def bench(label: str, database_url: str, args: argparse.Namespace, workdir: Path) -> bool:
    env = bench_env(database_url, workdir)
    uuids = prepare(env, args.checks)
    with gunicorn(env, workdir / f"gunicorn-{label}.log", "--backlog", "2048") as port:
        if port is None:
            return False
        # A short warm-up so both workers have imported everything and opened connections.
        warmup = drive(port, uuids, 1.0, args.concurrency)
        cpu_before = server_cpu_seconds(port)
        result = drive(port, uuids, args.seconds, args.concurrency)
        cpu = server_cpu_seconds(port) - cpu_before
    recorded = int(django_output(env, COUNT_RUNS)[-1])
    # Every answered ping must be a stored run (warm-up pings included).
    lost = result["ok"] + warmup["ok"] - recorded
    statements = int(django_output(env, COUNT_STATEMENTS, uuids[0])[-1])
    cpu_ms = cpu * 1000 / max(result["ok"], 1)
    in_process_ms = float(django_output(env, IN_PROCESS, ",".join(uuids))[-1])
    passed = result["rate"] >= TARGET and result["errors"] == 0 and lost == 0
    passed = passed and statements <= STATEMENTS_TARGET
    if label == "SQLite":
        passed = passed and cpu_ms <= CPU_MS_TARGET
    kinds = f" {result['error_kinds']}" if result["errors"] else ""
    print(
        f"{label:<10} {result['rate']:7.1f} pings/s over {result['elapsed']:.1f} s "
        f"({result['ok']} ok, {result['errors']} errors{kinds}; "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; {recorded} runs stored, "
        f"{lost} lost)\n"
        f"{'':<10} {statements} statements per ping (target <= {STATEMENTS_TARGET}), "
        f"{cpu_ms:.2f} ms server CPU per ping"
        + (f" (target <= {CPU_MS_TARGET} ms)" if label == "SQLite" else "")
        + f"; target >= {TARGET:.0f} pings/s, 0 errors: {'PASS' if passed else 'FAIL'}\n"
        f"{'':<10} {in_process_ms:.2f} ms CPU per ping in one process, no server "
        f"(load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])})"
    )
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measured duration (default 20)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="pings in flight at once (default 8)"
    )
    parser.add_argument(
        "--checks", type=int, default=20, help="heartbeat checks pinged in turn (default 20)"
    )
    parser.add_argument("--sqlite-only", action="store_true", help="skip the PostgreSQL run")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-pings-"))
    results = []
    try:
        results.append(bench("SQLite", f"sqlite:///{workdir / 'bench.sqlite3'}", args, workdir))
        if not args.sqlite_only:
            results.extend(run_postgres(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(results) else 1


def run_postgres(args: argparse.Namespace, workdir: Path) -> list[bool]:
    with scratch_postgres("bench_pings") as url:
        return [] if url is None else [bench("PostgreSQL", url, args, workdir)]


if __name__ == "__main__":
    sys.exit(main())
