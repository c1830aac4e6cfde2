"""Every Redis connection of the console: short timeouts and a per-process outage breaker.

A Redis that accepts connections and never answers costs each call its full read timeout.
One page touches Redis several times (cache, broker, stats), so after one failure the
console stops asking for a while (doubling up to ``MAX_BACKOFF``) and answers "Redis is
unreachable" at once, instead of paying the timeout again on every call. The outage is
logged when it starts, at most once a minute while it lasts, and when it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.client import Pipeline

from opsconsole.env import format_duration

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 15.0
LOG_EVERY = 60.0

# Failures that mean "Redis is not reachable"; a ResponseError (WRONGTYPE, …) is Redis
# answering, and says nothing about an outage.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)


class RedisUnavailable(redis.exceptions.ConnectionError):
    """Raised without touching the network while a recent failure says Redis is down."""


@dataclass
class _Outage:
    since: float
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    logged_at: float | None = None


_outages: dict[str, _Outage] = {}
_lock = threading.Lock()


def redis_timeout() -> float:
    """Connect and read timeout of every Redis call (``REDIS_TIMEOUT``), read when used."""
    return float(getattr(settings, "REDIS_TIMEOUT", 1.0))


def describe(url: str) -> str:
    """``host:port/db`` of a Redis URL: never the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


def outage(target: str) -> _Outage | None:
    """The ongoing outage of ``target`` as this process saw it, or None."""
    with _lock:
        return _outages.get(target)


def check_available(target: str) -> None:
    """Raises RedisUnavailable while ``target`` is in its back-off window."""
    now = time.monotonic()
    with _lock:
        state = _outages.get(target)
        if state is not None and now < state.retry_at:
            raise RedisUnavailable(
                f"Redis at {target} is unreachable ({state.last_error}); "
                f"next try in {state.retry_at - now:.0f}s"
            )


def seconds_until_retry(target: str) -> float:
    with _lock:
        state = _outages.get(target)
        return 0.0 if state is None else max(0.0, state.retry_at - time.monotonic())


def record_failure(target: str, exc: BaseException, *, report: bool = True) -> None:
    now = time.monotonic()
    error = str(exc) or type(exc).__name__
    with _lock:
        state = _outages.setdefault(target, _Outage(since=now))
        state.failures += 1
        state.last_error = error
        state.retry_at = now + min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (state.failures - 1))
        due = report and (state.logged_at is None or now - state.logged_at >= LOG_EVERY)
        if due:
            state.logged_at = now
        lasted = now - state.since
        backoff = state.retry_at - now
    if due:
        logger.error(
            "Redis at %s unreachable%s: %s; retrying every %s at most, degraded meanwhile",
            target,
            f" for {format_duration(lasted)}" if lasted >= 1 else "",
            error,
            format_duration(backoff),
        )
    else:
        logger.debug("Redis at %s still unreachable: %s", target, error)


def record_success(target: str) -> None:
    with _lock:
        state = _outages.pop(target, None)
    if state is not None and state.logged_at is not None:
        logger.warning(
            "Redis at %s reachable again after %s",
            target,
            format_duration(time.monotonic() - state.since),
        )


def guarded(target: str, operation: Callable[[], T], *, report: bool = True) -> T:
    """Runs one Redis operation through the outage breaker of ``target``."""
    check_available(target)
    try:
        result = operation()
    except RedisUnavailable:
        raise
    except OUTAGE_ERRORS as exc:
        record_failure(target, exc, report=report)
        raise
    record_success(target)
    return result


class GuardedPipeline(Pipeline):
    guard_target = ""
    guard_report = True

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return guarded(
            self.guard_target,
            lambda: super(GuardedPipeline, self).execute(raise_on_error),
            report=self.guard_report,
        )


class GuardedRedis(redis.Redis):
    """A redis-py client whose every command passes the outage breaker."""

    guard_report = True

    @property
    def guard_target(self) -> str:
        kwargs = self.connection_pool.connection_kwargs
        if "path" in kwargs:
            return str(kwargs["path"])
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return guarded(
            self.guard_target,
            lambda: super(GuardedRedis, self).execute_command(*args, **options),
            report=self.guard_report,
        )

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedPipeline:
        pipe = GuardedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.guard_target = self.guard_target
        pipe.guard_report = self.guard_report
        return pipe


def redis_client(
    url: str | None = None,
    *,
    timeout: float | None = None,
    read_timeout: float | None = None,
    report: bool = True,
) -> GuardedRedis:
    """A client for ``url`` (default ``REDIS_URL``) with ``REDIS_TIMEOUT`` connect and read
    timeouts; ``read_timeout`` is for blocking commands that wait on the server by design."""
    seconds = redis_timeout() if timeout is None else timeout
    client = GuardedRedis.from_url(
        url or settings.REDIS_URL,
        socket_connect_timeout=seconds,
        socket_timeout=seconds if read_timeout is None else read_timeout,
    )
    client.guard_report = report
    return client


class RedisOutageLogFilter(logging.Filter):
    """Drops django-q2's own log lines about an unreachable Redis (a traceback per scheduler
    pass, one ERROR per guard cycle): the breaker already reports the outage once a minute."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, OUTAGE_ERRORS):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, OUTAGE_ERRORS)
