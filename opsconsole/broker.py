"""The django-q2 Redis broker with timeouts and back-off (``Q_CLUSTER["broker_class"]``).

django-q2's own Redis broker connects without timeouts, so a Redis that hangs hangs whoever
queues a task (a web request included); and while Redis is down its pusher dies and is
reborn every ten seconds with a traceback, and its sentinel logs an ERROR per guard cycle.
Here every call goes through the outage breaker of ``opsconsole.redis_guard``: bounded by
``REDIS_TIMEOUT``, failing fast during the back-off, and the outage logged once a minute.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf

from opsconsole.redis_guard import (
    OUTAGE_ERRORS,
    GuardedRedis,
    redis_client,
    redis_timeout,
    seconds_until_retry,
)

# How long one BLPOP waits on the server for a task; its read timeout adds REDIS_TIMEOUT.
BLOCKING_SECONDS = 1


class ResilientRedisBroker(Redis):
    def __init__(self, list_key: str | None = None) -> None:
        super().__init__(list_key)
        self._blocking: GuardedRedis | None = None

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state)
        self._blocking = None

    @staticmethod
    def get_connection(list_key: str | None = None) -> GuardedRedis:
        if isinstance(Conf.REDIS, dict):
            seconds = redis_timeout()
            client = GuardedRedis(
                **{"socket_connect_timeout": seconds, "socket_timeout": seconds, **Conf.REDIS}
            )
            return client
        return redis_client(Conf.REDIS or settings.REDIS_URL)

    def _blocking_client(self) -> GuardedRedis:
        # Only the pusher blocks; its read timeout must outlast the server-side wait. Its
        # failures are not reported: the sentinel of the same cluster reports the outage.
        if self._blocking is None:
            kwargs = self.connection.connection_pool.connection_kwargs
            self._blocking = GuardedRedis(
                **{**kwargs, "socket_timeout": redis_timeout() + BLOCKING_SECONDS}
            )
            self._blocking.guard_report = False
        return self._blocking

    def dequeue(self) -> list[tuple[None, bytes]] | None:
        wait = seconds_until_retry(self.connection.guard_target)
        if wait:
            # The pusher calls this in a loop: sleeping is its back-off while Redis is down,
            # a second at a time so that it still sees the cluster stopping.
            time.sleep(min(wait, 1.0))
            return None
        try:
            task = self._blocking_client().blpop(self.list_key, BLOCKING_SECONDS)
        except OUTAGE_ERRORS:
            return None  # recorded by the breaker; the next call backs off
        return [(None, task[1])] if task else None

    def ping(self) -> bool:
        try:
            return bool(self.connection.ping())
        except OUTAGE_ERRORS:
            # The cluster starts anyway and waits for Redis with back-off, instead of exiting
            # and being restarted in a loop; the breaker has logged the outage.
            return False
