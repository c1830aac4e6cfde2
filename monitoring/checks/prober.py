"""Running probes concurrently, each cut off at its own timeout.

Probes run on daemon threads rather than a ThreadPoolExecutor: a probe stuck in a call that
ignores its timeout is abandoned when its deadline passes, and can neither delay the other
probes of the pass nor keep the process alive at exit (executor threads are joined at exit).
The prober never writes to the database; recording is the caller's (``runner``).
"""

from __future__ import annotations

import logging
import queue
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
    """What probes of one pass share: one pooled HTTP client instead of one per probe."""

    def __init__(self, max_connections: int):
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._max_connections = max_connections

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    limits=httpx.Limits(
                        max_connections=self._max_connections,
                        max_keepalive_connections=self._max_connections,
                    ),
                    follow_redirects=True,
                    headers={"User-Agent": "opsconsole-check/1"},
                )
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


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
    ctx = ProbeContext(max_connections=max_concurrency)
    done: queue.Queue[tuple[int, Observation, float]] = queue.Queue()
    waiting = deque(enumerate(checks))
    running: dict[int, tuple[float, float]] = {}  # index -> (started, deadline)
    results: dict[int, ProbeResult] = {}

    def worker(index: int, check: Check, started: float) -> None:
        observation = _probe(check, ctx)
        done.put((index, observation, (time.monotonic() - started) * 1000))

    try:
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
    finally:
        ctx.close()
    return [results[i] for i in range(len(checks))]
