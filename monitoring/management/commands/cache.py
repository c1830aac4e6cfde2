import sys
from collections import Counter

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from opsconsole.redis_guard import redis_client

# Keys inspected at most per command; a cache far larger than this needs redis-cli --bigkeys.
SCAN_LIMIT = 1_000_000
_GLOB_SPECIAL = "*?[]\\"


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in text)


class Command(BaseCommand):
    help = (
        "Inspect or clear the Redis cache. "
        "'cache stats [--prefix P]': keys by prefix, memory used of maxmemory, hit rate, "
        "evictions. 'cache invalidate PATTERN [--dry-run]': delete cache keys matching PATTERN "
        "(e.g. 'user:*'), "
        "only under the configured CACHE_KEY_PREFIX; SCAN + UNLINK, so Redis is never blocked. "
        "Needs REDIS_URL; without Redis both exit 2."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        stats = sub.add_parser("stats", help="keys by prefix, memory, hit rate, evictions")
        stats.add_argument(
            "--prefix", default="", help="only keys whose cache key starts with this (e.g. 'user:')"
        )
        invalidate = sub.add_parser("invalidate", help="delete the cache keys matching a pattern")
        invalidate.add_argument(
            "pattern", help="glob pattern of cache keys, without the key prefix, e.g. 'user:*'"
        )
        invalidate.add_argument(
            "--dry-run", action="store_true", help="list what would be deleted, delete nothing"
        )

    def _client(self):
        import redis

        if not settings.REDIS_URL:
            self.stderr.write(
                "No Redis configured (REDIS_URL is empty): the cache is local memory in each "
                "process, so there is nothing to inspect or invalidate from here. Restart the web "
                "processes to clear it."
            )
            sys.exit(2)
        client = redis_client()
        try:
            client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            self.stderr.write(f"Redis at {settings.REDIS_URL.split('@')[-1]} is unreachable: {exc}")
            sys.exit(2)
        return client

    def _base(self) -> str:
        """The Redis key start of every cache key: Django writes ``prefix:version:key``."""
        version = settings.CACHES["default"].get("VERSION", 1)
        return f"{settings.CACHE_KEY_PREFIX}:{version}:"

    def handle(self, *args, **options):
        client = self._client()
        try:
            if options["action"] == "stats":
                self._stats(client, options["prefix"])
            else:
                self._invalidate(client, options["pattern"], options["dry_run"])
        finally:
            client.close()

    def _stats(self, client, prefix: str) -> None:
        base = self._base()
        match = _escape_glob(base + prefix) + "*"
        groups: Counter[str] = Counter()
        scanned = 0
        for raw in client.scan_iter(match=match, count=1000):
            key = raw.decode(errors="replace")[len(base) :]
            head, sep, _ = key[len(prefix) :].partition(":")
            groups[prefix + head + sep + ("*" if sep else "")] += 1
            scanned += 1
            if scanned >= SCAN_LIMIT:
                break
        memory = client.info("memory")
        stats = client.info("stats")
        used, maxmemory = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
        hits, misses = int(stats.get("keyspace_hits", 0)), int(stats.get("keyspace_misses", 0))
        self.stdout.write(
            f"Redis {settings.REDIS_URL.split('@')[-1]}  cache keys under {match!r}: {scanned}"
            + (" (scan stopped at the limit)" if scanned >= SCAN_LIMIT else "")
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
            self.stdout.write(f"{'KEYS':>8}  PREFIX")
            for group, count in groups.most_common(50):
                self.stdout.write(f"{count:>8}  {group}")

    def _invalidate(self, client, pattern: str, dry_run: bool) -> None:
        if not pattern.strip():
            raise CommandError("give a pattern such as 'user:*' ('*' deletes every cache key)")
        base = self._base()
        # The prefix is escaped so that glob characters in it match literally; the pattern's own
        # glob characters apply only to the part after it.
        match = _escape_glob(base) + pattern
        removed = 0
        shown: list[str] = []
        batch: list[bytes] = []
        for raw in client.scan_iter(match=match, count=1000):
            if not raw.decode(errors="replace").startswith(base):
                continue  # defensive: never touch a key outside the cache prefix
            if len(shown) < 20:
                shown.append(raw.decode(errors="replace"))
            removed += 1
            if not dry_run:
                batch.append(raw)
                if len(batch) >= 500:
                    client.unlink(*batch)
                    batch.clear()
        if batch:
            client.unlink(*batch)
        verb = "Would remove" if dry_run else "Removed"
        self.stdout.write(f"{verb} {removed} keys matching {base + pattern!r}")
        for key in shown:
            self.stdout.write(f"  {key}")
        if removed > len(shown):
            self.stdout.write(f"  … and {removed - len(shown)} more")
