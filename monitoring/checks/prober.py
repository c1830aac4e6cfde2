"""Running probes concurrently, each cut off at its own timeout.

Probes run on daemon threads rather than a ThreadPoolExecutor: a probe stuck in a call that
ignores its timeout is abandoned when its deadline passes, and can neither delay the other
probes of the pass nor keep the process alive at exit (executor threads are joined at exit).
The threads are kept between probes (``_ProbeThreads``): starting one per probe was a tenth of
a probe's CPU. A probe's HTTP client is its own while it runs, checked out of a pool of idle
clients (``_ClientPool``) and given back after: probes of one pass once shared one pooled
client, queued on its lock, and that wait was timed as the target's latency (a 100 ms endpoint
measured at over 1 s under 200 concurrent probes, and marked ``warning``); a new client per
probe then cost more CPU than the rest of the probe. An asyncio prober on one
``httpx.AsyncClient`` was measured beside this one and was slower on both counts
(``bench/runchecks.py --compare``; docs/checks.md, ``http``).
The prober never writes to the database; recording is the caller's (``runner``).
"""

from __future__ import annotations

import functools
import logging
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.db import connections

from monitoring.kinds import ConfigError, Observation
from monitoring.models import Check, CheckRun
from opsconsole.redaction import redact, redact_value, redaction_scope, secret_values

logger = logging.getLogger(__name__)

# Time allowed past a probe's own timeout before it is abandoned: the probe's own timeout
# normally fires first and gives a more precise message.
DEADLINE_MARGIN = 0.25
# Idle HTTP clients kept for the next probes (each with at most CLIENT_CONNECTIONS kept-alive
# connections), and idle probe threads kept waiting for work; beyond these they are closed
# and end. Sized for a runner's concurrency (CHECKS_MAX_CONCURRENCY, 50 by default).
MAX_IDLE_CLIENTS = 64
MAX_IDLE_THREADS = 64
# A redirect to another host needs a second connection.
CLIENT_CONNECTIONS = 4


def _new_client() -> httpx.Client:
    return httpx.Client(
        verify=tls_context(),
        limits=httpx.Limits(
            max_connections=CLIENT_CONNECTIONS, max_keepalive_connections=CLIENT_CONNECTIONS
        ),
        follow_redirects=True,
        headers={"User-Agent": "opsconsole-check/1"},
    )


class _ClientPool:
    """Idle HTTP clients, each used by one probe at a time.

    A probe takes a client (a new one when none is idle) and gives it back when it is done,
    so no probe ever waits for another's connection or for a lock held during a request:
    the pool's lock is held only to take or give a client. What a client keeps between
    probes is its kept-alive connections, so checks of one host probed pass after pass reuse
    them, as a browser does, instead of a TCP (and TLS) handshake per probe; httpx drops one
    idle past its keep-alive expiry or closed by the server. At most ``MAX_IDLE_CLIENTS``
    wait: one given back beyond that is closed.
    """

    def __init__(self, max_idle: int = MAX_IDLE_CLIENTS) -> None:
        self._lock = threading.Lock()
        self._idle: list[httpx.Client] = []
        self._max_idle = max_idle

    def take(self) -> httpx.Client:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _new_client()

    def give_back(self, client: httpx.Client) -> None:
        with self._lock:
            if client.is_closed:
                return
            if len(self._idle) < self._max_idle:
                self._idle.append(client)
                return
        client.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


_clients = _ClientPool()


class ProbeContext:
    """What one probe is given: ``http``, an HTTP client that is this probe's alone until
    ``close`` gives it back (see ``_ClientPool``): what a kind times is the target, never a
    wait for a connection another probe holds."""

    def __init__(self, pool: _ClientPool | None = None):
        # A kind may hand work to threads of its own: the client is still taken once.
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._pool = pool or _clients

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = self._pool.take()
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._pool.give_back(self._http)
                self._http = None


class _ProbeThreads:
    """Daemon threads that run probes, kept waiting between them.

    A probe is handed to an idle thread, or to a new one when none is idle, so a probe never
    waits for a thread: one stuck past its deadline keeps its thread, and the next probe gets
    another. A thread that finds ``max_idle`` others idle when it finishes ends instead of
    waiting. The idle count and the queue change together under one lock, so every task put
    has a thread waiting for it.
    """

    def __init__(self, max_idle: int = MAX_IDLE_THREADS) -> None:
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._max_idle = max_idle

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._tasks.put(task)
                return
        threading.Thread(target=self._work, args=(task,), daemon=True, name="probe").start()

    def _work(self, task: Callable[[], None]) -> None:
        while True:
            try:
                task()
            except BaseException:  # noqa: BLE001 - a task reports its own outcome
                logger.exception("a probe thread's task raised")
            with self._lock:
                if self._idle >= self._max_idle:
                    return
                self._idle += 1
            task = self._tasks.get()


_threads = _ProbeThreads()


_tls_lock = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """The TLS settings every probe's client shares, made on first use and kept by the process.

    Building one parses the CA bundle (about 40 ms of CPU): once per probe that would cost more
    than the probe, and a runner that wakes every second would spend a core's tenth on it. The
    lock matters: the first pass's probes all ask at once, and each building its own made 200
    probes spend seconds of CPU before sending anything. An ``SSLContext`` is safe to share
    between threads. It honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` as httpx's default does.
    """
    with _tls_lock:
        return _build_tls_context()


@functools.cache
def _build_tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


@dataclass
class ProbeResult:
    check: Check
    observation: Observation
    duration_ms: float
    run: CheckRun | None = None
    # Why the run could not be recorded (None when it was).
    error: str | None = None


def _probe(check: Check, ctx: ProbeContext) -> Observation:
    # Drivers and servers echo URLs, DSNs and headers back in their errors: every text a probe
    # produces is scrubbed of the check's own secrets here, once, before anything stores or
    # shows it, so no kind has to remember to.
    secrets = secret_values(check.config)
    with redaction_scope(secrets):
        return redact_observation(_observe(check, ctx), secrets)


def _observe(check: Check, ctx: ProbeContext) -> Observation:
    try:
        return check.kind_impl.observe(check, ctx)
    except ConfigError as exc:
        return Observation(error=f"invalid config: {exc}")
    except Exception as exc:  # a probe must never take the pass down
        logger.exception("probe of %s raised", check.name, extra={"check": check.name})
        return Observation(error=f"probe error: {type(exc).__name__}: {exc}")
    finally:
        # Connections opened on this thread belong to it alone, and the thread lives on to
        # run other probes: closed here, when the kind opened one (most open none).
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None:
                conn.close()


def redact_observation(observation: Observation, secrets: list[str]) -> Observation:
    """The observation with the given secrets (and anything secret-shaped) out of its texts."""
    observation.message = redact(observation.message, secrets)
    if observation.error:
        observation.error = redact(observation.error, secrets)
    observation.details = redact_value(observation.details or {}, secrets)
    return observation


def probe_concurrently(
    checks: list[Check], *, max_concurrency: int | None = None
) -> list[ProbeResult]:
    """Probes every check, at most ``max_concurrency`` at once; results in input order."""
    if max_concurrency is None:
        max_concurrency = settings.CHECKS_MAX_CONCURRENCY
    done: queue.Queue[tuple[int, Observation, float]] = queue.Queue()
    waiting = deque(enumerate(checks))
    running: dict[int, tuple[float, float]] = {}  # index -> (started, deadline)
    results: dict[int, ProbeResult] = {}

    def worker(index: int, check: Check, started: float) -> None:
        ctx = ProbeContext()
        observation = Observation(error="probe error: no observation")
        try:
            observation = _probe(check, ctx)
        finally:
            # An abandoned probe gives its client back when its call returns; closing it
            # from here, under a request in flight, is not safe in httpx.
            ctx.close()
            done.put((index, observation, (time.monotonic() - started) * 1000))

    while waiting or running:
        while waiting and len(running) < max_concurrency:
            index, check = waiting.popleft()
            started = time.monotonic()
            running[index] = (started, started + check.timeout_seconds + DEADLINE_MARGIN)
            _threads.submit(functools.partial(worker, index, check, started))
        next_deadline = min(deadline for _, deadline in running.values())
        try:
            index, observation, duration = done.get(
                timeout=max(0.0, next_deadline - time.monotonic())
            )
            if index in running:  # a late answer from an abandoned probe is dropped
                del running[index]
                results[index] = ProbeResult(checks[index], observation, duration)
        except queue.Empty:
            pass
        now = time.monotonic()
        for index, (started, deadline) in list(running.items()):
            if now >= deadline:
                del running[index]
                check = checks[index]
                results[index] = ProbeResult(
                    check,
                    Observation(error=f"timed out after {check.timeout_seconds:g}s"),
                    (now - started) * 1000,
                )
    return [results[i] for i in range(len(checks))]
