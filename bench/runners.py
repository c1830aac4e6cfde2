"""Check runners at scale: N http checks at interval I against a loopback target answering in
D ms, run by 1, 2 and 3 ``runchecks --loop`` processes for T seconds each, on PostgreSQL.

    .venv/bin/python bench/runners.py [--checks 10000] [--interval 60] [--delay-ms 50]
        [--seconds 300] [--runners 1,2,3] [--concurrency 50]

The issue's figures: 10,000 checks at 60 s and 2,000 checks at 10 s, 5 minutes per
configuration (``--seconds`` makes a shorter run). A scratch database ``bench_runners_<pid>``
is created on BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres) and
dropped at the end; REDIS_URL for the runners is BENCH_REDIS_URL (default db 1).

For each runner count: the checks' first slots are spread evenly over one interval from the
moment every runner is up; after T seconds the runners get SIGTERM and finish their batches.
Printed per configuration, with targets: missed slots (slots due before the stop with no run,
target 0), duplicated runs (a slot run twice, target 0), lag from due time to stored run p50 /
p99 (target p99 <= 5 s), runs per second, runner CPU seconds per 1,000 runs, peak RSS per runner
(target <= 300 MB); then the scaling line (runs/s per runner as runners are added) and the load
average, since the machine may be busy with other work.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _server import PYTHON, ROOT, bench_env, django_output

LAG_P99_TARGET = 5.0
RSS_TARGET_MB = 300.0
# Slots due within this much of the stop are not counted as missed: their claim may be a
# poll away when SIGTERM arrives.
STOP_MARGIN = 3.0

TARGET_SERVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
delay = float(sys.argv[1])
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(delay)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
s.request_queue_size = 4096
print(s.server_address[1], flush=True)
s.serve_forever()
"""

SETUP = """
import sys
from monitoring.models import Check
n, interval, port = int(sys.argv[-3]), int(sys.argv[-2]), int(sys.argv[-1])
Check.objects.bulk_create(
    (
        Check(
            name=f"bench-{i:05d}",
            kind="http",
            config={"url": f"http://127.0.0.1:{port}/{i}"},
            interval_seconds=interval,
            timeout_seconds=5,
            status="ok",
        )
        for i in range(n)
    ),
    batch_size=2000,
)
print(n)
"""

# Before each configuration: no runs, no leases, nothing due until the runners are up.
RESET = """
from datetime import timedelta
from django.utils import timezone
from monitoring.models import Check, CheckRun
CheckRun.objects.all().delete()
Check.objects.update(
    next_run_at=timezone.now() + timedelta(days=1), lease_owner="", lease_expires_at=None,
    lease_slot_at=None,
)
print("ok")
"""

# First slots spread evenly over one interval from the given start (Unix time).
SPREAD = """
import sys
from datetime import datetime, timedelta, timezone as tz
from django.db import connection
start, interval = float(sys.argv[-2]), int(sys.argv[-1])
with connection.cursor() as cursor:
    cursor.execute(
        "UPDATE monitoring_check SET next_run_at = %s + ((id - (SELECT min(id) FROM "
        "monitoring_check)) * %s / (SELECT count(*) FROM monitoring_check)) * interval '1 second'",
        [datetime.fromtimestamp(start, tz.utc), float(interval)],
    )
print("ok")
"""

# The figures of one configuration, from the database: slots expected before the stop (the
# first slot of each check plus every interval after it), slots run, duplicates, lag.
MEASURE = """
import sys
from datetime import datetime, timezone as tz
from django.db import connection
start, stop, interval = float(sys.argv[-3]), float(sys.argv[-2]), int(sys.argv[-1])
start, stop = datetime.fromtimestamp(start, tz.utc), datetime.fromtimestamp(stop, tz.utc)
with connection.cursor() as cursor:
    cursor.execute(
        "WITH firsts AS (SELECT id, %s + ((id - (SELECT min(id) FROM monitoring_check)) * %s "
        "  / (SELECT count(*) FROM monitoring_check)) * interval '1 second' AS first "
        "  FROM monitoring_check) "
        "SELECT coalesce(sum(greatest(0, floor(extract(epoch FROM (%s - first)) / %s) + 1)), 0) "
        "FROM firsts WHERE first <= %s",
        [start, float(interval), stop, interval, stop],
    )
    expected = int(cursor.fetchone()[0])
    cursor.execute(
        "SELECT count(*), count(DISTINCT (check_id, slot_at)) FROM monitoring_checkrun "
        "WHERE slot_at IS NOT NULL AND slot_at <= %s",
        [stop],
    )
    in_window, distinct = cursor.fetchone()
    cursor.execute("SELECT count(*) FROM monitoring_checkrun WHERE slot_at IS NOT NULL")
    runs = cursor.fetchone()[0]
    cursor.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag) FROM ("
        "SELECT extract(epoch FROM created_at - slot_at) AS lag FROM monitoring_checkrun "
        "WHERE slot_at IS NOT NULL) AS lags"
    )
    p50, p99, worst = cursor.fetchone()
print(expected, in_window, distinct, runs, p50 or 0, p99 or 0, worst or 0)
"""


# The insert cost of the unique (check, slot_at) constraint that makes a slot's second run
# impossible: the same batches of runs inserted with it and without it.
INDEX_COST = """
import sys, time
from datetime import timedelta
from django.db import connection
from django.utils import timezone
from monitoring.models import Check, CheckRun
from opsconsole.bulk import insert_rows
batches, size = int(sys.argv[-2]), int(sys.argv[-1])
ids = list(Check.objects.values_list("id", flat=True)[:size])
start = timezone.now()
def insert_all():
    CheckRun.objects.all().delete()
    began = time.perf_counter()
    for b in range(batches):
        slot = start + timedelta(seconds=60 * b)
        insert_rows(CheckRun, [
            {"check_obj_id": i, "status": "ok", "value": 50.0, "message": "HTTP 200",
             "details": {}, "duration_ms": 50.0, "created_at": slot, "status_changed": False,
             "slot_at": slot}
            for i in ids
        ])
    return (time.perf_counter() - began) * 1e6 / (batches * len(ids))
def toggle(on):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM monitoring_checkrun")
        if on:
            cursor.execute("ALTER TABLE monitoring_checkrun ADD CONSTRAINT checkrun_one_per_slot "
                           "UNIQUE (check_id, slot_at)")
        else:
            cursor.execute("ALTER TABLE monitoring_checkrun DROP CONSTRAINT checkrun_one_per_slot")
# Alternated, twice each, so that a busy machine's drift does not favour one.
with_constraint = insert_all()
toggle(False)
without = insert_all()
without = min(without, insert_all())
toggle(True)
with_constraint = min(with_constraint, insert_all())
print(f"{with_constraint:.1f} {without:.1f}")
"""


class Sampler(threading.Thread):
    """Peak RSS of each runner, sampled every half second."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak = [0] * len(pids)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for i, proc in enumerate(self.procs):
                try:
                    self.peak[i] = max(self.peak[i], proc.memory_info().rss)
                except psutil.Error:
                    pass
            self.stop.wait(0.5)


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


def configuration(
    env: dict[str, str], args: argparse.Namespace, runners: int, workdir: Path
) -> dict[str, float]:
    django_output(env, RESET)
    logs = [open(workdir / f"runner-{runners}-{i}.log", "w") for i in range(runners)]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [PYTHON, "manage.py", "runchecks", "--loop", "--concurrency", str(args.concurrency)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        for log in logs
    ]
    try:
        for proc in procs:
            proc.stdout.readline()  # "runner … started": it is up
        start = time.time() + 1.0
        django_output(env, SPREAD, str(start), str(args.interval))
        handles = [psutil.Process(proc.pid) for proc in procs]
        cpu_before = sum(cpu_seconds(h) for h in handles)
        sampler = Sampler([proc.pid for proc in procs])
        sampler.start()
        time.sleep(max(0.0, start + args.seconds - time.time()))
        stop = time.time()
        cpu = sum(cpu_seconds(h) for h in handles) - cpu_before
        sampler.stop.set()
        load = os.getloadavg()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
    errors = sum(
        (workdir / f"runner-{runners}-{i}.log").read_text().count('"level": "ERROR"')
        for i in range(runners)
    )
    words = django_output(env, MEASURE, str(start), str(stop - STOP_MARGIN), str(args.interval))
    expected, in_window, distinct, runs = (int(w) for w in words[:4])
    p50, p99, worst = (float(w) for w in words[4:7])
    return {
        "runners": runners,
        "expected": expected,
        "missed": max(0, expected - distinct),
        "duplicated": in_window - distinct,
        "runs": runs,
        "runs_per_s": runs / args.seconds,
        "cpu_per_1000": cpu * 1000 / max(runs, 1),
        "p50": p50,
        "p99": p99,
        "max": worst,
        "rss_mb": max(sampler.peak) / 2**20,
        "errors": errors,
        "load": load,
    }


def report(args: argparse.Namespace, rows: list[dict[str, float]]) -> bool:
    print(
        f"\n{args.checks} http checks every {args.interval} s, target answering in "
        f"{args.delay_ms:g} ms, {args.seconds:g} s per configuration, "
        f"concurrency {args.concurrency} per runner"
    )
    header = (
        f"{'runners':>7} {'slots due':>9} {'missed':>6} {'dupl.':>5} {'runs/s':>7} "
        f"{'lag p50':>7} {'lag p99':>7} {'lag max':>7} {'CPU s/1k':>8} {'RSS MB':>6} "
        f"{'errors':>6}  load avg"
    )
    print(header)
    ok = True
    for r in rows:
        good = (
            r["missed"] == 0
            and r["duplicated"] == 0
            and r["p99"] <= LAG_P99_TARGET
            and r["rss_mb"] <= RSS_TARGET_MB
        )
        ok = ok and good
        print(
            f"{r['runners']:>7} {r['expected']:>9} {r['missed']:>6} {r['duplicated']:>5} "
            f"{r['runs_per_s']:>7.1f} {r['p50']:>6.2f}s {r['p99']:>6.2f}s {r['max']:>6.1f}s "
            f"{r['cpu_per_1000']:>8.2f} {r['rss_mb']:>6.0f} {r['errors']:>6}  "
            f"{' '.join(f'{x:.2f}' for x in r['load'])}  {'PASS' if good else 'MISS'}"
        )
    print(
        f"targets: missed 0, duplicated 0, lag p99 <= {LAG_P99_TARGET:g} s, "
        f"RSS <= {RSS_TARGET_MB:g} MB per runner"
    )
    scaling = ", ".join(
        f"{r['runners']}: {r['runs_per_s'] / r['runners']:.1f} runs/s per runner" for r in rows
    )
    needed = args.checks / args.interval
    print(f"scaling (runs/s per runner; the load needs {needed:.1f} runs/s): {scaling}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--interval", type=int, default=60, help="seconds (default 60)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="target's answer time")
    parser.add_argument("--seconds", type=float, default=300.0, help="per configuration")
    parser.add_argument("--runners", default="1,2,3", help="runner counts (default 1,2,3)")
    parser.add_argument("--concurrency", type=int, default=50, help="probes per runner")
    parser.add_argument(
        "--slot-index-cost",
        action="store_true",
        help="only measure what the unique (check, slot_at) constraint adds to inserting runs",
    )
    args = parser.parse_args()

    import psycopg

    admin_url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = f"bench_runners_{os.getpid()}"
    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    admin.execute(f'CREATE DATABASE "{name}"')
    workdir = Path(tempfile.mkdtemp(prefix="bench-runners-"))
    server = subprocess.Popen(
        [PYTHON, "-c", TARGET_SERVER, str(args.delay_ms / 1000)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        env = bench_env(f"{admin_url.rsplit('/', 1)[0]}/{name}", workdir)
        env["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
        env["LOG_FORMAT"] = "json"
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        django_output(env, SETUP, str(args.checks), str(args.interval), str(port))
        if args.slot_index_cost:
            batches, size = 200, min(args.checks, 500)
            with_it, without = django_output(env, INDEX_COST, str(batches), str(size))
            print(
                f"inserting {batches} batches of {size} runs: {with_it} µs per run with the "
                f"unique (check, slot_at) constraint, {without} µs without"
            )
            return 0
        rows = []
        for runners in (int(n) for n in args.runners.split(",")):
            rows.append(configuration(env, args, runners, workdir))
            print(
                f"  {runners} runner(s): {rows[-1]['runs']} runs, p99 lag {rows[-1]['p99']:.2f} s",
                flush=True,
            )
        return 0 if report(args, rows) else 1
    finally:
        server.kill()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
