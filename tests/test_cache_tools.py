"""manage.py cache stats / invalidate against a real Redis (this area's test database)."""

from __future__ import annotations

from io import StringIO

import pytest
import redis
from django.core.management import CommandError, call_command
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


# --- another application's Redis (seed 000: the synced app's d4l: keys) ------------------------

APP = "h6seedapp"  # this file's stand-in for the application's "d4l" prefix


@pytest.fixture
def app_redis(redis_url):
    """An application's keys on the test Redis: users, sessions, keys without a further ':',
    a key with glob characters in its name, and a neighbour prefix that must stay untouched."""
    client = redis.Redis.from_url(redis_url)

    def clear() -> None:
        for pattern in (f"{APP}:*", f"{APP}x:*"):
            stale = list(client.scan_iter(match=pattern, count=1000))
            if stale:
                client.delete(*stale)

    clear()
    pipe = client.pipeline(transaction=False)
    for n in range(120):
        pipe.set(f"{APP}:user:{n}", "u", ex=300)
    for n in range(15):
        pipe.set(f"{APP}:session:{n}", "s", ex=300)
    for n in range(4):
        pipe.set(f"{APP}:flag{n}", "f", ex=300)
    pipe.set(f"{APP}:user:profile:1", "p", ex=300)
    pipe.set(f"{APP}x:user:1", "neighbour", ex=300)
    pipe.execute()
    try:
        yield client
    finally:
        clear()
        client.close()


def test_stats_on_another_applications_redis_groups_keys_by_their_next_segment(
    app_redis, redis_url
):
    code, out, _ = run("stats", "--redis", redis_url, "--prefix", f"{APP}:")
    assert code == 0, out
    lines = out.splitlines()
    assert f"keys under '{APP}:*': 140" in lines[0]
    assert f"     121  {APP}:user:*" in out
    assert f"      15  {APP}:session:*" in out
    assert f"       4  {APP}:* (no further ':')" in out
    # One line per group, not per key; the neighbour prefix is not counted.
    assert len([line for line in lines if APP in line]) == 4
    assert f"{APP}x" not in out and "Memory used:" in out and "Hit rate:" in out


def test_invalidate_on_another_applications_redis_dry_run_counts_then_unlinks(app_redis, redis_url):
    code, out, _ = run("invalidate", f"{APP}:user:*", "--redis", redis_url, "--dry-run")
    assert code == 0 and f"Would remove 121 keys matching '{APP}:user:*'" in out
    assert "… and 101 more" in out
    assert app_redis.exists(f"{APP}:user:0", f"{APP}:user:profile:1") == 2

    code, out, _ = run("invalidate", f"{APP}:user:*", "--redis", redis_url)
    assert code == 0 and "Removed 121 keys" in out
    assert not list(app_redis.scan_iter(match=f"{APP}:user:*", count=1000))
    assert app_redis.exists(f"{APP}:session:0", f"{APP}:flag0", f"{APP}x:user:1") == 3


def test_invalidate_on_another_redis_refuses_a_pattern_without_a_fixed_start(app_redis, redis_url):
    for pattern in ("*", "?4l:*", "[d]4l:*"):
        with pytest.raises(CommandError, match="must start with fixed text"):
            run("invalidate", pattern, "--redis", redis_url)
    assert app_redis.exists(f"{APP}:user:0", f"{APP}x:user:1") == 2
    with pytest.raises(CommandError, match="redis://"):
        run("stats", "--redis", "http://127.0.0.1:6379/0")
    code, _, err = run("stats", "--redis", f"redis://127.0.0.1:{closed_port()}/0")
    assert code == 2 and "unreachable" in err


def test_a_walk_past_the_limit_stops_and_says_so(app_redis, redis_url):
    pipe = app_redis.pipeline(transaction=False)
    for n in range(3000):
        pipe.set(f"{APP}:bulk:{n}", "b", ex=300)
    pipe.execute()
    code, out, _ = run("stats", "--redis", redis_url, "--prefix", f"{APP}:", "--limit", "1000")
    assert code == 0 and "scan stopped after about 1,000 keys examined" in out
    assert int(out.splitlines()[0].rsplit(": ", 1)[1]) < 3140
    code, out, _ = run(
        "invalidate", f"{APP}:bulk:*", "--redis", redis_url, "--limit", "1000", "--dry-run"
    )
    assert code == 0 and "scan stopped" in out and "run the command again" in out
