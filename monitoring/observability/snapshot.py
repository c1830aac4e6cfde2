"""The /metrics snapshot: every registered collector, rendered at most every
``METRICS_SNAPSHOT_SECONDS`` and shared by all web processes through the cache.

Collectors read the database, so a scrape must not run them each time: with several gunicorn
workers behind one Prometheus, every worker would repeat the same queries. The rendered text
is stored in the Django cache with the time it was built; a cache ``add`` acts as a lock so one
process rebuilds while the others serve the previous text. With a local-memory cache (or while
Redis is down) each process keeps its own copy instead.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from opsconsole.registries import collectors

logger = logging.getLogger(__name__)

CACHE_KEY = "opsconsole:metrics:snapshot"
LOCK_KEY = "opsconsole:metrics:snapshot-lock"
# A rebuild taking longer than this is assumed dead and another process may start one.
LOCK_SECONDS = 30
# How long a process without any snapshot waits for another one's rebuild before building.
WAIT_FOR_OTHER_SECONDS = 2.0


@dataclass
class Snapshot:
    built_at: float  # Unix time, from timezone.now() so tests can move it
    text: str
    build_ms: float


_local: Snapshot | None = None
_local_lock = threading.Lock()


def _now() -> float:
    return timezone.now().timestamp()


class _Families:
    def __init__(self, families: list[Any]):
        self._families = families

    def collect(self):
        return iter(self._families)


def collect_families() -> list[Any]:
    """Runs every registered collector; a failing collector is logged and reported, not fatal."""
    now = timezone.now()
    families: list[Any] = []
    errors = GaugeMetricFamily(
        "opsconsole_collector_errors",
        "1 when a metrics collector failed in this snapshot",
        labels=["collector"],
    )
    for name, collector in sorted(collectors().items()):
        try:
            families.extend(collector(now))
            errors.add_metric([name], 0)
        except Exception:  # noqa: BLE001 - one broken area must not blank the whole scrape
            logger.exception("metrics collector %s failed", name, extra={"collector": name})
            errors.add_metric([name], 1)
    families.append(errors)
    return families


def render_families(families: list[Any]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode()


def build() -> Snapshot:
    started = time.monotonic()
    built_at = _now()
    families = collect_families()
    families.append(
        GaugeMetricFamily(
            "opsconsole_metrics_snapshot_timestamp_seconds",
            "When the served operations snapshot was built (Unix time)",
            value=built_at,
        )
    )
    text = render_families(families)
    return Snapshot(built_at, text, round((time.monotonic() - started) * 1000, 1))


def _shared_cache() -> bool:
    backend = caches["default"]
    return not isinstance(backend, LocMemCache) and "dummy" not in type(backend).__module__


def _fresh(snapshot: Snapshot | None, max_age: float) -> bool:
    return snapshot is not None and 0 <= _now() - snapshot.built_at < max_age


def current(max_age: float | None = None) -> Snapshot:
    """The operations snapshot, rebuilt only when older than ``max_age`` seconds."""
    global _local
    if max_age is None:
        max_age = settings.METRICS_SNAPSHOT_SECONDS
    local = _local
    if _fresh(local, max_age):
        return local  # type: ignore[return-value]
    if not _shared_cache():
        return _build_locally(max_age)

    cache = caches["default"]
    deadline = time.monotonic() + WAIT_FOR_OTHER_SECONDS
    while True:
        shared = cache.get(CACHE_KEY)
        if isinstance(shared, Snapshot) and _fresh(shared, max_age):
            _local = shared
            return shared
        if cache.add(LOCK_KEY, _now(), timeout=LOCK_SECONDS):
            try:
                snapshot = build()
                # Kept well past max_age so that a slow rebuild elsewhere can serve the old text.
                cache.set(CACHE_KEY, snapshot, timeout=max(60, int(max_age * 4)))
            finally:
                cache.delete(LOCK_KEY)
            _local = snapshot
            return snapshot
        if cache.get(LOCK_KEY) is None and cache.get(CACHE_KEY) is None:
            # Neither the lock nor a snapshot is visible although the add failed: the cache is
            # unreachable (ResilientRedisCache turns errors into misses). Build here; the local
            # copy then serves this process until Redis is back.
            return _build_locally(max_age)
        # Another process is rebuilding: the previous text is good enough meanwhile.
        stale = shared if isinstance(shared, Snapshot) else local
        if stale is not None:
            return stale
        if time.monotonic() >= deadline:
            return _build_locally(max_age)  # the builder is stuck or very slow
        time.sleep(0.05)


def _build_locally(max_age: float) -> Snapshot:
    global _local
    with _local_lock:
        if not _fresh(_local, max_age):
            _local = build()
        return _local  # type: ignore[return-value]


def process_metrics_text() -> str:
    """This process's django-prometheus registry (requests, database calls): per process by
    nature, in memory, so it is rendered live rather than shared."""
    return generate_latest(REGISTRY).decode()


def exposition(max_age: float | None = None) -> str:
    return current(max_age).text + process_metrics_text()


def reset_local() -> None:
    """Forget this process's copy (tests, and after settings change)."""
    global _local
    _local = None
