"""``manage.py cache``: statistics and invalidation of a Redis cache, the console's own or (with
``--redis URL``) the one of an application it watches, such as the synced app's ``d4l:`` keys.

Both walk the keyspace with SCAN (``SCAN_COUNT`` keys a call) and delete with batched UNLINK,
so Redis is never blocked; both stop after ``--limit`` keys examined and say so.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from opsconsole.redis_guard import describe, redis_client

# Keys examined at most per command by default; a larger keyspace needs --limit or
# redis-cli --bigkeys / --memkeys.
SCAN_LIMIT = 1_000_000
SCAN_COUNT = 1000
UNLINK_BATCH = 500
# Distinct groups counted by stats; beyond, keys are counted under "(other groups)", so that a
# keyspace whose next segment is an id does not grow a line (and memory) per key.
MAX_GROUPS = 10_000
SHOWN_GROUPS = 50
_GLOB_SPECIAL = "*?[]\\"
_PATTERN_MARKERS = "*?["


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in text)


@dataclass
class Scan:
    """A bounded SCAN MATCH walk: ``examined`` counts the keys Redis looked at (COUNT a call),
    ``stopped`` tells that the limit cut it short."""

    client: redis.Redis
    match: str
    limit: int
    examined: int = 0
    stopped: bool = False

    def __iter__(self) -> Iterator[bytes]:
        cursor: int | str = 0
        while True:
            if self.examined >= self.limit:
                self.stopped = True
                return
            cursor, keys = self.client.scan(cursor=cursor, match=self.match, count=SCAN_COUNT)
            self.examined += SCAN_COUNT
            yield from keys
            if int(cursor) == 0:
                return


class Command(BaseCommand):
    help = (
        "Inspect or clear a Redis cache. Without --redis: the console's own cache (REDIS_URL, "
        "keys under CACHE_KEY_PREFIX). With --redis URL: any application's keys on that Redis, "
        "e.g. 'cache stats --redis redis://app-redis:6379/0 --prefix d4l:' and "
        "\"cache invalidate 'd4l:user:*' --redis redis://app-redis:6379/0\". "
        "'stats': keys grouped by their next segment after the prefix (d4l:user:* 1200), "
        "memory, hit rate, evictions. 'invalidate PATTERN [--dry-run]': SCAN + batched UNLINK "
        "of the matching keys (--dry-run prints the count and a sample, deletes nothing). "
        f"Both stop after --limit keys examined (default {SCAN_LIMIT:,}) and say so. "
        "Exit 2 when the Redis is not configured or unreachable."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        stats = sub.add_parser("stats", help="keys by group, memory, hit rate, evictions")
        stats.add_argument(
            "--prefix",
            default="",
            help="only keys starting with this (e.g. 'user:', or 'd4l:' with --redis); keys "
            "are grouped by the segment after it",
        )
        invalidate = sub.add_parser("invalidate", help="delete the keys matching a pattern")
        invalidate.add_argument(
            "pattern",
            help="glob pattern: of cache keys without the console's key prefix ('user:*'), or "
            "with --redis of the application's whole keys ('d4l:user:*')",
        )
        invalidate.add_argument(
            "--dry-run", action="store_true", help="count and list what would be deleted"
        )
        for command in (stats, invalidate):
            command.add_argument(
                "--redis",
                metavar="URL",
                default="",
                help="another application's Redis (redis://host:port/db): its keys as they "
                "are, not the console's cache",
            )
            command.add_argument(
                "--limit",
                type=int,
                default=SCAN_LIMIT,
                help=f"keys examined at most (default {SCAN_LIMIT:,}); the output says when "
                "the walk stopped there",
            )

    def _client(self, url: str) -> redis.Redis:
        if not url:
            self.stderr.write(
                "No Redis configured (REDIS_URL is empty): the cache is local memory in each "
                "process, so there is nothing to inspect or invalidate from here. Restart the web "
                "processes to clear it. For another application's Redis give --redis URL."
            )
            sys.exit(2)
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise CommandError("--redis: expected a URL such as redis://127.0.0.1:6379/0")
        client = redis_client(url)
        try:
            client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            self.stderr.write(f"Redis at {describe(url)} is unreachable: {exc}")
            sys.exit(2)
        return client

    def _base(self, foreign: bool) -> str:
        """The start of every key the command may see: nothing on another application's Redis;
        Django's ``prefix:version:`` on the console's own."""
        if foreign:
            return ""
        version = settings.CACHES["default"].get("VERSION", 1)
        return f"{settings.CACHE_KEY_PREFIX}:{version}:"

    def handle(self, *args, **options):
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        url = options["redis"] or settings.REDIS_URL
        client = self._client(url)
        foreign = bool(options["redis"])
        try:
            if options["action"] == "stats":
                self._stats(client, url, foreign, options["prefix"], options["limit"])
            else:
                self._invalidate(
                    client, foreign, options["pattern"], options["dry_run"], options["limit"]
                )
        finally:
            client.close()

    def _stats(self, client, url: str, foreign: bool, prefix: str, limit: int) -> None:
        base = self._base(foreign)
        match = _escape_glob(base + prefix) + "*"
        groups: Counter[str] = Counter()
        other_groups = 0
        matched = 0
        scan = Scan(client, match, limit)
        for raw in scan:
            key = raw.decode(errors="replace")[len(base) :]
            head, sep, _ = key[len(prefix) :].partition(":")
            # One line per next segment, never per key: keys with no further ':' share one.
            group = f"{prefix}{head}:*" if sep else f"{prefix}* (no further ':')"
            if group in groups or len(groups) < MAX_GROUPS:
                groups[group] += 1
            else:
                other_groups += 1
            matched += 1
        memory = client.info("memory")
        stats = client.info("stats")
        used, maxmemory = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
        hits, misses = int(stats.get("keyspace_hits", 0)), int(stats.get("keyspace_misses", 0))
        what = "keys" if foreign else "cache keys"
        self.stdout.write(f"Redis {describe(url)}  {what} under {match!r}: {matched}")
        if scan.stopped:
            self.stdout.write(
                f"Note: the scan stopped after about {scan.examined:,} keys examined (--limit "
                f"{limit:,}): counts cover that part of the keyspace only."
            )
        if maxmemory:
            self.stdout.write(
                f"Memory used: {used / 1048576:.1f} MB of {maxmemory / 1048576:.1f} MB maxmemory "
                f"({used * 100 / maxmemory:.1f} %), policy {memory.get('maxmemory_policy', '?')}"
            )
        else:
            self.stdout.write(
                f"Memory used: {used / 1048576:.1f} MB "
                "(no maxmemory set: Redis can grow without bound)"
            )
        rate = f"{hits * 100 / (hits + misses):.1f} %" if hits + misses else "n/a (no reads yet)"
        self.stdout.write(
            f"Hit rate: {rate} ({hits} hits, {misses} misses since Redis started; whole server)"
        )
        self.stdout.write(
            f"Evictions: {stats.get('evicted_keys', 0)}  Expired: {stats.get('expired_keys', 0)}"
        )
        if groups:
            self.stdout.write(f"{'KEYS':>8}  GROUP")
            for group, count in groups.most_common(SHOWN_GROUPS):
                self.stdout.write(f"{count:>8}  {group}")
            hidden = len(groups) - SHOWN_GROUPS
            if hidden > 0:
                rest = sum(count for _, count in groups.most_common()[SHOWN_GROUPS:])
                self.stdout.write(f"{rest:>8}  … in {hidden} more groups")
            if other_groups:
                self.stdout.write(
                    f"{other_groups:>8}  (other groups: more than {MAX_GROUPS:,} distinct)"
                )

    def _invalidate(self, client, foreign: bool, pattern: str, dry_run: bool, limit: int) -> None:
        if not pattern.strip():
            raise CommandError("give a pattern such as 'user:*' ('*' deletes every cache key)")
        if foreign and pattern[0] in _PATTERN_MARKERS:
            # On the application's own Redis nothing scopes the pattern: '*' is every key.
            raise CommandError(
                "with --redis the pattern must start with fixed text, such as 'd4l:user:*'; "
                f"{pattern!r} would match keys of every application on that Redis"
            )
        base = self._base(foreign)
        # The prefix is escaped so that glob characters in it match literally; the pattern's own
        # glob characters apply only to the part after it.
        match = _escape_glob(base) + pattern
        matched = removed = 0
        shown: list[str] = []
        batch: list[bytes] = []
        scan = Scan(client, match, limit)
        for raw in scan:
            if not raw.decode(errors="replace").startswith(base):
                continue  # defensive: never touch a key outside the cache prefix
            if len(shown) < 20:
                shown.append(raw.decode(errors="replace"))
            matched += 1
            if not dry_run:
                batch.append(raw)
                if len(batch) >= UNLINK_BATCH:
                    # UNLINK's own count: SCAN may return a key twice while the table shrinks.
                    removed += client.unlink(*batch)
                    batch.clear()
        if batch:
            removed += client.unlink(*batch)
        if dry_run:
            removed = matched
        verb = "Would remove" if dry_run else "Removed"
        self.stdout.write(f"{verb} {removed} keys matching {base + pattern!r}")
        for key in shown:
            self.stdout.write(f"  {key}")
        if matched > len(shown):
            self.stdout.write(f"  … and {matched - len(shown)} more")
        if scan.stopped:
            self.stdout.write(
                f"Note: the scan stopped after about {scan.examined:,} keys examined (--limit "
                f"{limit:,}); run the command again for the rest."
            )
