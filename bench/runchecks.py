"""Benchmark: one runchecks pass over 500 http checks against a loopback server that answers
after 100 ms. Targets: ≤ 2.5 s wall (a serial pass takes 50 s), peak RSS ≤ 200 MB.

Run: .venv/bin/python bench/runchecks.py [--checks 500] [--delay 0.1]
Uses a throw-away SQLite database; the target server runs in its own process.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = """
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
s.request_queue_size = 2048
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="bench-runchecks-")
    os.environ.update(
        {
            "DATA_DIR": data_dir,
            "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
            "LOG_FORMAT": "console",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from monitoring.checks.runner import run_checks
    from monitoring.models import Check, CheckRun

    call_command("migrate", verbosity=0)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.delay)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        Check.objects.bulk_create(
            Check(
                name=f"bench-{i}",
                kind="http",
                config={"url": f"http://127.0.0.1:{port}/{i}"},
                timeout_seconds=10,
            )
            for i in range(args.checks)
        )
        checks = list(Check.objects.all())
        started = time.monotonic()
        results = run_checks(checks, claim=True)
        wall = time.monotonic() - started
    finally:
        server.kill()
    ok = sum(1 for r in results if r.run.status == "ok")
    others = sorted({f"{r.run.status}: {r.run.message}" for r in results if r.run.status != "ok"})[
        :5
    ]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    serial = args.checks * args.delay
    print(
        f"checks: {args.checks}, target delay {args.delay * 1000:.0f} ms, concurrency {settings.CHECKS_MAX_CONCURRENCY}"
    )
    print(f"runs recorded: {CheckRun.objects.count()}, ok: {ok}")
    for line in others:
        print(f"  not ok: {line}")
    print(
        f"pass wall time: {wall:.2f} s   (target ≤ 2.5 s; serial would take {serial:.0f} s)  {'PASS' if wall <= 2.5 else 'MISS'}"
    )
    print(f"peak RSS: {peak_mb:.0f} MB   (target ≤ 200 MB)  {'PASS' if peak_mb <= 200 else 'MISS'}")


if __name__ == "__main__":
    main()
