"""A Redis cache that degrades to misses instead of raising while Redis is down."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import RedisError

from opsconsole.redis_guard import GuardedRedis

logger = logging.getLogger(__name__)


class GuardedRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Through the outage breaker: while Redis hangs, one call pays the timeout and the
        # following ones miss at once instead of each waiting for it.
        self._client = GuardedRedis


class ResilientRedisCache(RedisCache):
    """Reads return the default and writes are dropped when Redis cannot be reached.

    The cache only ever holds derived data, so losing it costs time, never correctness.
    """

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = GuardedRedisCacheClient

    def _guard(self, method: str, default: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(super(), method)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            # The breaker logs the outage itself, once a minute.
            logger.debug("cache %s failed, continuing without cache: %s", method, exc)
            return default

    def get(self, key, default=None, version=None):
        return self._guard("get", default, key, default, version)

    def set(self, key, value, timeout=None, version=None):
        return self._guard("set", None, key, value, timeout, version)

    def add(self, key, value, timeout=None, version=None):
        return self._guard("add", False, key, value, timeout, version)

    def delete(self, key, version=None):
        return self._guard("delete", False, key, version)

    def get_many(self, keys, version=None):
        return self._guard("get_many", {}, keys, version)

    def set_many(self, data, timeout=None, version=None):
        return self._guard("set_many", [], data, timeout, version)

    def incr(self, key, delta=1, version=None):
        return self._guard("incr", None, key, delta, version)

    def touch(self, key, timeout=None, version=None):
        return self._guard("touch", False, key, timeout, version)

    def has_key(self, key, version=None):
        return self._guard("has_key", False, key, version)
