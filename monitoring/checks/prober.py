"""Running probes concurrently, each cut off at its own timeout.

Probes run on daemon threads rather than a ThreadPoolExecutor: a probe stuck in a call that
ignores its timeout is abandoned when its deadline passes, and can neither delay the other
probes of the pass nor keep the process alive at exit (executor threads are joined at exit).
Each probe has its own ``ProbeContext`` and so its own HTTP connections: probes of one pass
once shared one pooled client, queued on its lock, and that wait was timed as the target's
latency (a 100 ms endpoint measured at over 1 s under 200 concurrent probes, and marked
``warning``). An asyncio prober on one ``httpx.AsyncClient`` was measured beside this one and
was slower on both counts (``bench/runchecks.py --compare``; docs/checks.md, ``http``).
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


class ProbeContext:
    """What one probe is given: ``http``, an HTTP client of this probe alone.

    Its own client means its own connections: no probe waits for a connection another probe
    holds, nor on a pool lock that every probe of the pass takes, so what a kind times is the
    target. A fresh connection per probe is also what a new visitor pays, and every run of a
    check measures the same thing (never sometimes a kept-alive connection, sometimes not).
    ``max_connections`` bounds the connections the client may open: a redirect to another host
    needs a second one.
    """

    def __init__(self, max_connections: int = 4):
        # A kind may hand work to threads of its own: the client is still made once.
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._max_connections = max_connections

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    verify=tls_context(),
                    limits=httpx.Limits(
                        max_connections=self._max_connections,
                        max_keepalive_connections=self._max_connections,
                    ),
                    follow_redirects=True,
                    headers={"User-Agent": "opsconsole-check/1"},
                )
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None


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
        # Connections opened on this thread belong to it alone.
        connections.close_all()


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
        try:
            observation = _probe(check, ctx)
        finally:
            # An abandoned probe closes its own connections when its call returns; closing
            # them from here, under a request in flight, is not safe in httpx.
            ctx.close()
        done.put((index, observation, (time.monotonic() - started) * 1000))

    while waiting or running:
        while waiting and len(running) < max_concurrency:
            index, check = waiting.popleft()
            started = time.monotonic()
            running[index] = (started, started + check.timeout_seconds + DEADLINE_MARGIN)
            threading.Thread(
                target=worker,
                args=(index, check, started),
                daemon=True,
                name=f"probe-{check.name}",
            ).start()
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
