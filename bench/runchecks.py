"""Benchmark: one runchecks pass over 500 http checks against a loopback target that always
answers after 100 ms, on SQLite and on PostgreSQL.

Prints, per database: the pass's wall time (target ≤ 2.5 s; a serial pass would take 50 s),
the probes alone, SQL statements per recorded run (target ≤ 3), runs marked warning or
critical by a target that never is (target 0), the latency the runs measured, peak RSS
(target ≤ 200 MB) and the load average, since the machine may be busy with other work.

--compare also measures the ways the prober could reach the targets (the same 500 requests,
50 in flight): threads with a client each (the prober's way), threads sharing one pooled client
(its way before), and asyncio on one shared ``httpx.AsyncClient`` or a client per request.

Run: .venv/bin/python bench/runchecks.py [--checks 500] [--delay 0.1] [--sqlite-only] [--compare]
The target runs in its own process; SQLite is a throw-away file, PostgreSQL a database made for
the run and dropped after it (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from _server import scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WALL_TARGET_S = 2.5
STATEMENTS_TARGET = 3
RSS_TARGET_MB = 200

SERVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
delay = float(sys.argv[1])
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without this, Nagle and delayed ACK add 40 ms.
    disable_nagle_algorithm = True
    def do_GET(self):
        time.sleep(delay)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
class S(ThreadingHTTPServer):
    daemon_threads = True
    # A class attribute: the constructor listens, so an instance attribute comes too late and a
    # backlog of 5 drops the SYNs of a burst (a 1 s retransmit each, timed as the target's).
    request_queue_size = 2048
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


@contextmanager
def target(delay: float) -> Iterator[int]:
    """The port of a loopback server, in its own process, answering every GET after ``delay``."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(delay)], stdout=subprocess.PIPE, text=True
    )
    try:
        yield int(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def spread(values_ms: list[float]) -> str:
    ordered = sorted(values_ms)
    return (
        f"p50 {statistics.median(ordered):.0f} ms, p99 {ordered[int(len(ordered) * 0.99)]:.0f} ms, "
        f"max {ordered[-1]:.0f} ms"
    )


# --- one pass on one database (a process of its own: Django is set up once) -----------------


def run_pass(database_url: str, checks: int, delay: float) -> bool:
    data_dir = tempfile.mkdtemp(prefix="bench-runchecks-")
    os.environ.update(
        {
            "DATA_DIR": data_dir,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "warning",
        }
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from monitoring.checks.prober import probe_concurrently
    from monitoring.checks.runner import run_checks
    from monitoring.models import Check, CheckRun

    call_command("migrate", verbosity=0)
    with target(delay) as port:
        Check.objects.bulk_create(
            Check(
                name=f"bench-{i}",
                kind="http",
                config={"url": f"http://127.0.0.1:{port}/{i}"},
                timeout_seconds=10,
            )
            for i in range(checks)
        )
        loaded = list(Check.objects.all())
        load_before = load_average()
        with CaptureQueriesContext(connection) as queries:
            started = time.monotonic()
            results = run_checks(loaded, claim=True)
            wall = time.monotonic() - started
        # The probes alone, a second time over the same checks: what of the pass is theirs.
        started = time.monotonic()
        probe_concurrently(loaded)
        probe_wall = time.monotonic() - started
    shutil.rmtree(data_dir, ignore_errors=True)

    runs = [result.run for result in results if result.run is not None]
    statements = len(queries) / len(runs) if runs else float("inf")
    alarmed = [run for run in runs if run.status in ("warning", "critical")]
    warnings = sum(1 for run in runs if run.status == "warning")
    others = sorted({f"{run.status}: {run.message}" for run in runs if run.status != "ok"})[:5]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    serial = checks * delay
    verdicts = [
        wall <= WALL_TARGET_S,
        statements <= STATEMENTS_TARGET,
        not alarmed,
        peak_mb <= RSS_TARGET_MB,
    ]
    print(
        f"{connection.vendor}: {checks} checks, target delay {delay * 1000:.0f} ms, concurrency "
        f"{settings.CHECKS_MAX_CONCURRENCY}, load average {load_before} before, "
        f"{load_average()} after"
    )
    print(f"  runs recorded: {CheckRun.objects.count()}, not recorded: {len(results) - len(runs)}")
    print(
        f"  pass wall time: {wall:.2f} s   (target ≤ {WALL_TARGET_S} s; serial would take "
        f"{serial:.0f} s)  {'PASS' if verdicts[0] else 'MISS'}"
    )
    print(f"  of which probing (measured alone): {probe_wall:.2f} s")
    print(
        f"  SQL statements per recorded run: {statements:.2f} ({len(queries)} for {len(runs)})   "
        f"(target ≤ {STATEMENTS_TARGET})  {'PASS' if verdicts[1] else 'MISS'}"
    )
    print(
        f"  runs marked warning: {warnings}, critical: {len(alarmed) - warnings}   (target 0)  "
        f"{'PASS' if verdicts[2] else 'MISS'}"
    )
    for line in others:
        print(f"    not ok: {line}")
    values = [run.value for run in runs if run.value is not None]
    if values:
        print(f"  measured latency: {spread(values)} (the target takes {delay * 1000:.0f} ms)")
    print(
        f"  peak RSS: {peak_mb:.0f} MB   (target ≤ {RSS_TARGET_MB} MB)  "
        f"{'PASS' if verdicts[3] else 'MISS'}"
    )
    return all(verdicts)


def run_in_child(label: str, database_url: str, args: argparse.Namespace) -> bool:
    command = [sys.executable, __file__, "--database-url", database_url]
    command += ["--checks", str(args.checks), "--delay", str(args.delay)]
    child = subprocess.run(command, cwd=ROOT)
    if child.returncode not in (0, 1):
        print(f"{label}: the run failed (exit {child.returncode})")
    return child.returncode == 0


def run_postgres(args: argparse.Namespace) -> list[bool]:
    with scratch_postgres("bench_runchecks") as url:
        return [] if url is None else [run_in_child("PostgreSQL", url, args)]


# --- --compare: ways to reach the targets, the same requests each -----------------------------


def compare(requests: int, delay: float, concurrency: int) -> None:
    import httpx

    tls = httpx.create_ssl_context()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def threads(shared: httpx.Client | None) -> list[float]:
        slots = threading.Semaphore(concurrency)
        latencies: list[float] = []

        def one(url: str) -> None:
            try:
                client = shared or httpx.Client(verify=tls)
                started = time.monotonic()
                client.get(url, timeout=10)
                latencies.append((time.monotonic() - started) * 1000)
                if shared is None:
                    client.close()
            finally:
                slots.release()

        workers = []
        for url in urls:
            slots.acquire()
            worker = threading.Thread(target=one, args=(url,), daemon=True)
            worker.start()
            workers.append(worker)
        for worker in workers:
            worker.join()
        return latencies

    async def event_loop(shared: bool) -> list[float]:
        slots = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        common = httpx.AsyncClient(verify=tls, limits=limits) if shared else None

        async def one(url: str) -> None:
            async with slots:
                client = common or httpx.AsyncClient(verify=tls)
                started = time.monotonic()
                try:
                    await asyncio.wait_for(client.get(url, timeout=10), 10)
                    latencies.append((time.monotonic() - started) * 1000)
                except (TimeoutError, httpx.HTTPError):
                    latencies.append(float("inf"))
                if common is None:
                    await client.aclose()

        await asyncio.gather(*(one(url) for url in urls))
        if common is not None:
            await common.aclose()
        return latencies

    ways: list[tuple[str, Callable[[], list[float]]]] = [
        ("threads, a client per probe (the prober)", lambda: threads(None)),
        ("threads, one shared pooled client", lambda: threads(httpx.Client(limits=limits))),
        ("asyncio, one shared AsyncClient", lambda: asyncio.run(event_loop(True))),
        ("asyncio, an AsyncClient per probe", lambda: asyncio.run(event_loop(False))),
    ]
    print(f"{requests} requests, {concurrency} in flight, target delay {delay * 1000:.0f} ms:")
    with target(delay) as port:
        urls = [f"http://127.0.0.1:{port}/{i}" for i in range(requests)]
        for label, way in ways:
            before = load_average()
            started = time.monotonic()
            latencies = way()
            wall = time.monotonic() - started
            over = sum(1 for latency in latencies if latency >= 1000)
            print(
                f"  {label:42} wall {wall:5.2f} s, {spread(latencies)}, "
                f"≥ 1 s: {over}  (load average {before})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.1, help="the target's answer time, s")
    parser.add_argument("--sqlite-only", action="store_true", help="skip the PostgreSQL run")
    parser.add_argument("--compare", action="store_true", help="also compare ways of probing")
    parser.add_argument("--database-url", help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args()

    if args.database_url:
        return 0 if run_pass(args.database_url, args.checks, args.delay) else 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-runchecks-"))
    try:
        results = [run_in_child("SQLite", f"sqlite:///{workdir / 'bench.sqlite3'}", args)]
        if not args.sqlite_only:
            results.extend(run_postgres(args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.compare:
        # In flight as in the pass: CHECKS_MAX_CONCURRENCY, whose default is 50.
        compare(args.checks, args.delay, int(os.environ.get("CHECKS_MAX_CONCURRENCY", "50")))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
