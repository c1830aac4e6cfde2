"""manage.py cache stats / invalidate against a real Redis (this area's test database)."""

from __future__ import annotations

from io import StringIO

import pytest
import redis
from django.core.management import call_command
from django.test.utils import override_settings

from tests.conftest import closed_port

PREFIX = "h8cache"


@pytest.fixture
def seeded_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    # Keys of this file's own prefix left by an interrupted earlier run would be counted here.
    stale = list(client.scan_iter(match=f"{PREFIX}:*", count=500))
    if stale:
        client.delete(*stale)
    keys = {
        f"{PREFIX}:1:user:1": "a",
        f"{PREFIX}:1:user:2": "b",
        f"{PREFIX}:1:user:profile:3": "c",
        f"{PREFIX}:1:session:1": "d",
        f"{PREFIX}:1:userx": "e",
        "otherapp:1:user:1": "f",
        "user:1": "g",
    }
    for key, value in keys.items():
        client.set(key, value, ex=300)
    with override_settings(REDIS_URL=redis_url, CACHE_KEY_PREFIX=PREFIX):
        yield client
    client.delete(*keys)
    client.close()


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("cache", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_invalidate_removes_only_matching_keys_under_the_prefix(seeded_redis):
    code, out, _ = run("invalidate", "user:*")
    assert code == 0
    assert "Removed 3 keys" in out
    remaining = {k.decode() for k in seeded_redis.keys("*") if not k.startswith(b"django_q")}
    assert f"{PREFIX}:1:user:1" not in remaining and f"{PREFIX}:1:user:profile:3" not in remaining
    assert {
        f"{PREFIX}:1:session:1",
        f"{PREFIX}:1:userx",
        "otherapp:1:user:1",
        "user:1",
    } <= remaining


def test_invalidate_dry_run_lists_and_keeps(seeded_redis):
    code, out, _ = run("invalidate", "user:*", "--dry-run")
    assert code == 0
    assert "Would remove 3 keys" in out and f"{PREFIX}:1:user:2" in out
    assert (
        seeded_redis.exists(
            f"{PREFIX}:1:user:1", f"{PREFIX}:1:user:2", f"{PREFIX}:1:user:profile:3"
        )
        == 3
    )


def test_invalidate_works_through_the_django_cache_keys(redis_url):
    from django.core.cache import caches

    settings = {
        "default": {
            "BACKEND": "opsconsole.cache.ResilientRedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": PREFIX,
        }
    }
    with override_settings(CACHES=settings, REDIS_URL=redis_url, CACHE_KEY_PREFIX=PREFIX):
        cache = caches["default"]
        cache.set("user:42", {"name": "x"}, 300)
        cache.set("report:1", "keep", 300)
        try:
            code, out, _ = run("invalidate", "user:*")
            assert code == 0 and "Removed 1 keys" in out
            assert cache.get("user:42") is None and cache.get("report:1") == "keep"
        finally:
            cache.delete_many(["user:42", "report:1"])


def test_stats_show_keys_by_prefix_memory_hit_rate_and_evictions(seeded_redis):
    code, out, _ = run("stats")
    assert code == 0
    assert (
        "cache keys under" in out
        and "Memory used:" in out
        and "Hit rate:" in out
        and "Evictions:" in out
    )
    assert "       2  session:*" not in out  # one session key
    assert "       3  user:*" in out
    code, out, _ = run("stats", "--prefix", "user:")
    assert "cache keys under" in out and ": 3" in out.splitlines()[0]


def test_without_redis_both_say_so_and_exit_non_zero():
    with override_settings(REDIS_URL=""):
        for args in (("stats",), ("invalidate", "user:*")):
            code, _, err = run(*args)
            assert code == 2 and "No Redis configured" in err
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"):
        code, _, err = run("stats")
        assert code == 2 and "unreachable" in err
