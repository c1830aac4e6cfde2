"""Deleting the synced application's cache keys after a batch item succeeds.

The operations document's batch sync invalidates "affected cache entries" after each update
(``d4l:user:<id>``). A batch ``http`` operation does the same with ``invalidate``: key
templates such as ``d4l:user:{key}`` deleted on ``CACHE_INVALIDATE_REDIS_URL`` (the
application's Redis, not the console's) once the item's request has succeeded.

A template without glob characters names one key, deleted with ``UNLINK``. A template with them
(``d4l:user:{key}:*``) is a pattern: matching keys are found with ``SCAN`` (bounded, see
``MAX_SCAN_CALLS``) and unlinked in batches. The item's key is substituted as literal text
either way: in a pattern its glob characters are escaped, so an item ``*`` deletes the key
``d4l:user:*`` and never every user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

from opsconsole.redis_guard import describe, redis_client

PLACEHOLDER = "{key}"
GLOB_CHARACTERS = "*?[]\\"
# What makes a template a pattern (a backslash alone only escapes within one).
PATTERN_MARKERS = "*?["
MAX_TEMPLATES = 20
MAX_TEMPLATE_LENGTH = 300
# A pattern needs this much fixed text before its first glob character or {key}: "*" or
# "{key}*" would scan and delete across the whole application's keyspace.
MIN_PATTERN_PREFIX = 3
# Per pattern and item: SCAN calls of COUNT keys each. A pattern examines at most
# MAX_SCAN_CALLS x SCAN_COUNT keys; past that the item records that the scan stopped.
SCAN_COUNT = 1000
MAX_SCAN_CALLS = 100
UNLINK_BATCH = 500


class InvalidationError(Exception):
    """The keys could not be deleted (Redis unreachable, refused, scan cut short)."""


def escape_glob(text: str) -> str:
    """``text`` as a literal inside a Redis glob pattern."""
    return "".join(f"\\{char}" if char in GLOB_CHARACTERS else char for char in text)


def is_pattern(template: str) -> bool:
    return any(char in PATTERN_MARKERS for char in template.replace(PLACEHOLDER, ""))


def template_problem(template: Any) -> str | None:
    """Why ``template`` cannot be an ``invalidate`` entry, or None."""
    if not isinstance(template, str) or not template.strip():
        return "must be a non-empty string such as d4l:user:{key}"
    if len(template) > MAX_TEMPLATE_LENGTH:
        return f"must be at most {MAX_TEMPLATE_LENGTH} characters"
    if any(not char.isprintable() or char.isspace() for char in template):
        return "must not contain spaces or control characters"
    if is_pattern(template):
        fixed = template
        for stop in (*PATTERN_MARKERS, PLACEHOLDER):
            fixed = fixed.split(stop, 1)[0]
        if len(fixed) < MIN_PATTERN_PREFIX:
            return (
                f"a pattern must start with at least {MIN_PATTERN_PREFIX} fixed characters "
                "(e.g. d4l:user:{key}:*), not a glob or {key}"
            )
    return None


def validate_templates(value: Any) -> str | None:
    """Why an operation's ``invalidate`` list is refused, or None."""
    if not isinstance(value, list) or not value or len(value) > MAX_TEMPLATES:
        return f"must be a list of 1 to {MAX_TEMPLATES} key templates such as d4l:user:{{key}}"
    for index, template in enumerate(value):
        if problem := template_problem(template):
            return f"[{index}] {problem}"
    if not settings.CACHE_INVALIDATE_REDIS_URL:
        return "needs CACHE_INVALIDATE_REDIS_URL (the application's Redis) to be set"
    return None


def expand(template: str, key: str) -> str:
    """The key or pattern of one item: ``{key}`` replaced by the item key, escaped in a
    pattern so that it matches only itself."""
    return template.replace(PLACEHOLDER, escape_glob(key) if is_pattern(template) else key)


@dataclass
class Invalidated:
    keys: list[str]
    deleted: int = 0
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"keys": self.keys, "deleted": self.deleted}


class CacheInvalidator:
    """One client to the application's Redis for a batch run, shared by its item threads
    (redis-py clients are thread-safe). Through the console's outage breaker: when that Redis
    is down one item pays the connect timeout and the following ones fail at once."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or settings.CACHE_INVALIDATE_REDIS_URL
        self.client = redis_client(self.url) if self.url else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def invalidate(self, templates: list[str], key: str) -> Invalidated:
        """Deletes the item's keys. Raises InvalidationError with what went wrong; the caller
        keeps it on the item."""
        targets = [expand(template, key) for template in templates]
        done = Invalidated(keys=targets)
        if self.client is None:
            raise InvalidationError("CACHE_INVALIDATE_REDIS_URL is not set")
        try:
            pairs = list(zip(targets, templates, strict=True))
            exact = [target for target, template in pairs if not is_pattern(template)]
            if exact:
                done.deleted += int(self.client.unlink(*exact))
            for target, template in pairs:
                if is_pattern(template):
                    done.deleted += self._unlink_matching(target, done)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise InvalidationError(
                f"cache invalidation on Redis {describe(self.url)} failed after "
                f"{done.deleted} of the keys: {type(exc).__name__}: {exc}"
            ) from None
        if done.notes:
            raise InvalidationError("; ".join(done.notes))
        return done

    def _unlink_matching(self, pattern: str, done: Invalidated) -> int:
        assert self.client is not None
        deleted = 0
        cursor: int | str = 0
        pending: list[bytes] = []
        for _ in range(MAX_SCAN_CALLS):
            cursor, found = self.client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
            pending.extend(found)
            if len(pending) >= UNLINK_BATCH:
                deleted += int(self.client.unlink(*pending))
                pending.clear()
            if int(cursor) == 0:
                break
        else:
            done.notes.append(
                f"pattern {pattern!r}: scan stopped after {MAX_SCAN_CALLS * SCAN_COUNT} keys "
                "examined; run 'manage.py cache invalidate' for the rest"
            )
        if pending:
            deleted += int(self.client.unlink(*pending))
        return deleted
