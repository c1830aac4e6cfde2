"""The prober under load: a probe's latency is the target's, never the prober's own waiting.

The target runs in its own process, so that the 200 probe threads of a pass cannot slow its
answers down: what the runs measure beyond its 100 ms is the prober's doing.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator

import psutil
import pytest

from monitoring.checks.prober import probe_concurrently
from monitoring.checks.runner import run_checks
from monitoring.models import Check, CheckStatus

pytestmark = pytest.mark.django_db

DELAY_MS = 100

# A threaded server that answers every request after DELAY_MS; /redirect/... sends the client
# on to /landed (after the same delay), so a redirected probe makes two timed exchanges.
TARGET = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

delay = float(sys.argv[1]) / 1000

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without this, Nagle and delayed ACK add 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self):
        time.sleep(delay)
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/landed")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    # A class attribute: the constructor listens, so setting it on the instance is too late,
    # and a backlog of 5 drops the SYNs of a burst of probes (a 1 s retransmit each).
    request_queue_size = 1024

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """The base URL of a loopback HTTP server, in its own process, answering in DELAY_MS."""
    proc = subprocess.Popen(
        [sys.executable, "-c", TARGET, str(DELAY_MS)], stdout=subprocess.PIPE, text=True
    )
    try:
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()


def http_checks(count: int, url: str, **fields) -> list[Check]:
    Check.objects.bulk_create(
        Check(name=f"web-{i}", kind="http", config={"url": f"{url}/{i}"}, **fields)
        for i in range(count)
    )
    return list(Check.objects.filter(name__startswith="web-").order_by("id"))


def test_under_load_each_probe_is_timed_as_its_target_answers_and_none_is_marked_warning(
    target, settings
):
    # 200 probes in flight at once: with one HTTP client shared by the pass, they queued on its
    # pool and that wait was timed as latency (a median above 1 s, most runs `warning`).
    settings.CHECKS_MAX_CONCURRENCY = 200
    checks = http_checks(200, target, warn=1000, crit=5000, timeout_seconds=5)

    results = run_checks(checks, claim=False)

    runs = [result.run for result in results]
    assert len(runs) == 200 and all(run is not None for run in runs)
    not_ok = sorted({f"{run.status}: {run.message}" for run in runs if run.status != "ok"})
    assert not_ok == []
    values = sorted(run.value for run in runs)
    # Never faster than the target's own delay, and close to it: the machine is shared and
    # busy, so the bound leaves room for scheduling, but not for the queueing (seconds).
    assert values[0] >= DELAY_MS
    assert statistics.median(values) < DELAY_MS + 150, values
    assert values[-1] < DELAY_MS + 600, values


def test_a_hanging_target_among_many_probes_is_cut_off_at_its_timeout(
    target, hanging_server, settings
):
    settings.CHECKS_MAX_CONCURRENCY = 100
    checks = http_checks(99, target, warn=1000, crit=5000, timeout_seconds=5)
    hanging = Check.objects.create(
        name="hang", kind="http", config={"url": hanging_server}, timeout_seconds=1
    )

    hung, *answered = run_checks([hanging, *checks], claim=False)

    assert hung.run.status == CheckStatus.CRITICAL
    assert "timed out after 1s" in hung.run.message
    # Abandoned at its deadline (timeout plus the prober's margin), give or take a busy machine.
    assert 1000 <= hung.duration_ms < 2500, hung.duration_ms
    assert all(result.run.status == CheckStatus.OK for result in answered)
    assert max(result.run.value for result in answered) < DELAY_MS + 600
    # No probe waited for the hanging one: each took its own time, well short of a second.
    assert max(result.duration_ms for result in answered) < 1000


def test_a_redirected_probe_is_timed_over_both_exchanges(target):
    check = Check.objects.create(
        name="moved", kind="http", config={"url": f"{target}/redirect/old"}, timeout_seconds=5
    )

    (result,) = run_checks([check], claim=False)

    assert result.run.status == CheckStatus.OK
    assert 2 * DELAY_MS <= result.run.value < 2 * DELAY_MS + 400


def _connections_to(url: str) -> set[int]:
    """Local ports of this process's open TCP connections to the target."""
    port = int(url.rsplit(":", 1)[1])
    return {
        conn.laddr.port
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    }


def test_a_second_pass_reuses_the_first_pass_threads_and_kept_alive_connections(target):
    """Starting a thread and an HTTP client (and a TCP connection) per probe was most of a
    probe's CPU: the next pass takes idle ones instead, each still one probe's alone."""
    checks = [
        Check(pk=i + 1, name=f"reuse-{i}", kind="http", config={"url": f"{target}/{i}"})
        for i in range(20)
    ]
    first = probe_concurrently(checks, max_concurrency=20)
    assert all(r.observation.error is None for r in first)
    threads = {t.ident for t in threading.enumerate() if t.name == "probe"}
    connections = _connections_to(target)
    assert len(connections) >= 20

    second = probe_concurrently(checks, max_concurrency=20)

    assert all(r.observation.error is None for r in second)
    assert all(r.observation.value >= DELAY_MS for r in second)
    assert {t.ident for t in threading.enumerate() if t.name == "probe"} <= threads
    assert _connections_to(target) == connections, "the same connections, none opened anew"
