"""The applications of the operations documents (seeds 000 and 001) as they run them: the
synced application's cache invalidated after each batch item, its environment names for the
monitor's thresholds and interval, and errors that stay readable where they show."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from backlog import services as backlog_services
from backlog.models import BacklogEntry, BacklogStatus
from batches.executor import run_batch
from batches.invalidation import escape_glob, expand, template_problem
from batches.models import BatchStatus, ItemStatus
from batches.services import create_batch
from monitoring.kinds import get_kind
from monitoring.models import Check
from opsconsole.api import BadRequest
from opsconsole.excerpt import MAX_EXCERPT, MAX_MARKUP, error_excerpt
from tests.conftest import ROOT, closed_port, reply

NGINX_502 = (
    """<html>
<head><title>502   Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
</body>
</html>
"""
    + "<!-- padding -->\n" * 50
)

DEBUG_PAGE_WITHOUT_TITLE = """<!DOCTYPE html><html><head><style>body { color: red }</style>
<script>var secret = 1;</script></head><body>

  <h1>Server   Error &amp; more</h1>
  <p>Traceback (most recent call last): ...</p></body></html>"""

APP = "h6seedapps"  # the application's key prefix in these tests ("d4l" in the document)


@pytest.fixture(autouse=True)
def fast_executor(settings):
    settings.BATCH_EXECUTOR_DELAY = 0
    settings.BATCH_RETRY_BACKOFF = 0.01
    settings.BATCH_ITEM_MAX_ATTEMPTS = 2
    settings.BATCH_OPERATION_TIMEOUT = 20


# --- errors readable where they show ------------------------------------------------------------


def test_error_excerpt_keeps_a_pages_title_or_first_text_line(once_per_suite):
    assert error_excerpt(f"HTTP 502: {NGINX_502}") == "HTTP 502: 502 Bad Gateway"
    assert error_excerpt(DEBUG_PAGE_WITHOUT_TITLE) == "Server Error & more"
    assert error_excerpt("<html><body></body></html>") == "(an HTML page without text)"
    assert error_excerpt("connection\n  refused\tby peer") == "connection refused by peer"
    assert error_excerpt("HTTP 400: a < b and c > d") == "HTTP 400: a < b and c > d"
    cut = error_excerpt("x" * 5000)
    assert len(cut) == MAX_EXCERPT and cut.endswith("…")
    long_title = error_excerpt(f"<html><title>{'t ' * 400}</title></html>")
    assert len(long_title) <= MAX_EXCERPT
    # A hostile page (thousands of unclosed tags, on which the lazy patterns cost quadratic
    # time) costs little: only its first MAX_MARKUP characters are read, so a title past them
    # is never searched for and the excerpt is that of the start alone.
    hostile = "<html>" + "<script a" * 50_000 + "<title>" * 50_000
    assert error_excerpt(hostile) == error_excerpt(hostile[:MAX_MARKUP])
    late = "<html><body>" + " " * MAX_MARKUP + "<title>Late</title>"
    assert error_excerpt(late) == "(an HTML page without text)"


def test_a_batch_items_error_is_the_pages_title_not_the_page(db, http_server):
    server = http_server(lambda request: reply(403, NGINX_502.replace("502", "403"), "text/html"))
    batch = create_batch(
        {
            "operation": "http",
            "creator": "tests",
            "items": ["a"],
            "payload": {"url": f"{server.url}/items/{{key}}", "timeout": 2},
        }
    )
    assert run_batch(str(batch.id)) == BatchStatus.FAILED
    item = batch.items.get()
    assert item.error == "HTTP 403: 403 Bad Gateway"


def test_a_backlog_entrys_error_is_the_pages_first_line_not_the_page(db, settings, http_server):
    settings.BACKLOG_MAX_ATTEMPTS = 1
    server = http_server(lambda request: reply(500, DEBUG_PAGE_WITHOUT_TITLE, "text/html"))
    settings.BACKLOG_HANDLERS = {"users": f"webhook:{server.url}"}
    backlog_services.enqueue("users", "42")
    backlog_services.process()
    entry = BacklogEntry.objects.get()
    assert entry.status == BacklogStatus.FAILED
    assert "HTTP 500" in entry.last_error and "Server Error & more" in entry.last_error
    assert "<" not in entry.last_error and len(entry.last_error) <= MAX_EXCERPT


# --- the synced application's cache, invalidated after each item (seed 000) --------------------


@pytest.fixture
def app_cache(redis_url, settings):
    client = redis.Redis.from_url(redis_url)

    def clear() -> None:
        stale = list(client.scan_iter(match=f"{APP}:*", count=1000))
        if stale:
            client.delete(*stale)

    clear()
    settings.CACHE_INVALIDATE_REDIS_URL = redis_url
    try:
        yield client
    finally:
        clear()
        client.close()


def sync_batch(server, keys, invalidate):
    return create_batch(
        {
            "operation": "http",
            "creator": "batch-sync",
            "items": keys,
            "payload": {
                "url": f"{server.url}/users/{{key}}/sync",
                "timeout": 2,
                "invalidate": invalidate,
            },
        }
    )


def test_a_succeeded_item_invalidates_the_applications_keys_and_nothing_else(
    db, http_server, app_cache
):
    for key in (
        "user:42",
        "user:42:profile",
        "user:42:badges",
        "user:420",
        "user:4",
        "user:*",
        "user:*:profile",
        "user:7",
        "leaderboard",
    ):
        app_cache.set(f"{APP}:{key}", "cached", ex=300)

    def handler(request):
        return reply(500 if "/7/" in request.path else 200, "ok")

    server = http_server(handler)
    batch = sync_batch(server, ["42", "*", "7"], [f"{APP}:user:{{key}}", f"{APP}:user:{{key}}:*"])
    assert run_batch(str(batch.id)) == BatchStatus.COMPLETED_WITH_ERRORS
    left = {k.decode().removeprefix(f"{APP}:") for k in app_cache.scan_iter(match=f"{APP}:*")}
    # 42's own keys are gone; the item "*" is a literal key, not a pattern over every user;
    # the failed item 7 invalidates nothing.
    assert left == {"user:420", "user:4", "user:7", "leaderboard"}
    item = batch.items.get(key="42")
    assert item.status == ItemStatus.SUCCEEDED and item.error == ""
    assert item.result["invalidated"] == {
        "keys": [f"{APP}:user:42", f"{APP}:user:42:*"],
        "deleted": 3,
    }
    assert batch.items.get(key="*").result["invalidated"]["deleted"] == 2


def test_an_unreachable_cache_is_recorded_on_the_item_which_still_succeeded(
    db, http_server, app_cache, settings
):
    server = http_server(lambda request: reply(200, "ok"))
    batch = sync_batch(server, ["1", "2"], [f"{APP}:user:{{key}}"])
    settings.CACHE_INVALIDATE_REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    started = time.monotonic()
    assert run_batch(str(batch.id)) == BatchStatus.COMPLETED
    assert time.monotonic() - started < 10
    assert len(server.requests) == 2  # each call made once: nothing retried or lost
    for item in batch.items.all():
        assert item.status == ItemStatus.SUCCEEDED and item.attempts == 1
        assert item.error.startswith("succeeded, but the cache was not invalidated")
        assert "Redis 127.0.0.1" in item.error
        assert item.result["status"] == 200 and item.result["invalidated"] is None
        assert item.result["warning"] == item.error


@pytest.mark.parametrize(
    ("invalidate", "problem"),
    [
        (f"{APP}:user:{{key}}", "must be a list"),
        ([], "must be a list"),
        (["*"], "fixed characters"),
        (["{key}*"], "fixed characters"),
        (["d4l:user:{key}", 5], "[1]"),
        (["d4l:user: {key}"], "spaces"),
        (["x" * 301], "at most 300"),
    ],
)
def test_bad_invalidate_lists_are_refused_when_the_batch_is_created(
    db, app_cache, invalidate, problem
):
    with pytest.raises(BadRequest) as refused:
        create_batch(
            {
                "operation": "http",
                "creator": "c",
                "items": ["1"],
                "payload": {"url": "https://api.example/{key}", "invalidate": invalidate},
            }
        )
    assert problem in refused.value.details["payload.invalidate"]


def test_invalidate_needs_the_applications_redis_to_be_configured(db, settings):
    settings.CACHE_INVALIDATE_REDIS_URL = ""
    with pytest.raises(BadRequest) as refused:
        create_batch(
            {
                "operation": "http",
                "creator": "c",
                "items": ["1"],
                "payload": {"url": "https://api.example/{key}", "invalidate": ["d4l:u:{key}"]},
            }
        )
    assert "CACHE_INVALIDATE_REDIS_URL" in refused.value.details["payload.invalidate"]


def test_item_keys_are_literal_in_key_templates(once_per_suite):
    assert escape_glob("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    assert expand("d4l:user:{key}", "*") == "d4l:user:*"  # an exact key: UNLINK, no glob
    assert expand("d4l:user:{key}:*", "4?[x]") == "d4l:user:4\\?\\[x\\]:*"
    assert template_problem("d4l:{key}") is None and template_problem("d4l:*") is None
    assert template_problem("{key}") is None  # one exact key per item
    assert "fixed" in template_problem("?:{key}")


# --- the monitor's environment names (seed 000) -------------------------------------------------


def test_alert_thresholds_set_the_default_warnings_of_checks_that_set_none(db, settings):
    settings.CPU_ALERT_THRESHOLD = 70
    settings.MEMORY_ALERT_THRESHOLD = 60
    settings.DISK_ALERT_THRESHOLD = 97
    settings.REDIS_ALERT_THRESHOLD = 50
    system, redis_kind = get_kind("system"), get_kind("redis")
    assert system.default_thresholds({"metric": "cpu"}) == (70, 90, "above")
    assert system.default_thresholds({"metric": "memory"}) == (60, 95, "above")
    # A warning above the critical default raises the critical one to it.
    assert system.default_thresholds({"metric": "disk"}) == (97, 97, "above")
    assert system.default_thresholds({"metric": "swap"}) == (50, 80, "above")
    assert redis_kind.default_thresholds({"metric": "memory"}) == (50, 90, "above")
    assert redis_kind.default_thresholds({"metric": "latency"}) == (100, 1000, "above")
    check = Check.objects.create(name="cpu", kind="system", config={"metric": "cpu"})
    assert check.thresholds() == (70, 90, "above")
    assert check.threshold_status(75) == "warning"
    settings.CPU_ALERT_THRESHOLD = 80  # read when evaluated, not frozen when made
    assert check.threshold_status(75) == "ok"
    explicit = Check.objects.create(name="cpu2", kind="system", config={"metric": "cpu"}, warn=50)
    assert explicit.thresholds()[0] == 50


def _settings_of(tmp_path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environ.update(DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="opsconsole.settings", **env)
    code = (
        "from django.conf import settings as s; print(s.CHECKS_DEFAULT_INTERVAL, "
        "s.CPU_ALERT_THRESHOLD, s.MEMORY_ALERT_THRESHOLD, s.DISK_ALERT_THRESHOLD, "
        "s.REDIS_ALERT_THRESHOLD)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_documents_environment_names_are_read_strictly_at_start(tmp_path, once_per_suite):
    seed = _settings_of(
        tmp_path,
        MONITOR_CHECK_INTERVAL="60000",  # milliseconds, as the document writes it
        CPU_ALERT_THRESHOLD="80",
        MEMORY_ALERT_THRESHOLD="85",
        DISK_ALERT_THRESHOLD="90",
        REDIS_ALERT_THRESHOLD="75",
    )
    assert seed.returncode == 0, seed.stderr
    assert seed.stdout.split() == ["60.0", "80", "85", "90", "75"]
    changed = _settings_of(tmp_path, MONITOR_CHECK_INTERVAL="30s", CPU_ALERT_THRESHOLD="65")
    assert changed.stdout.split()[:2] == ["30.0", "65"], changed.stderr
    for env, named in (
        ({"CPU_ALERT_THRESHOLD": "high"}, "CPU_ALERT_THRESHOLD: expected a whole number"),
        ({"REDIS_ALERT_THRESHOLD": "101"}, "REDIS_ALERT_THRESHOLD: must be at most 100"),
        ({"MONITOR_CHECK_INTERVAL": "soon"}, "MONITOR_CHECK_INTERVAL"),
        ({"MONITOR_CHECK_INTERVAL": "500"}, "a bare number is milliseconds"),
        (
            {"MONITOR_CHECK_INTERVAL": "60000", "CHECKS_DEFAULT_INTERVAL": "30"},
            "disagree",
        ),
    ):
        refused = _settings_of(tmp_path, **env)
        assert refused.returncode != 0 and named in refused.stderr, (env, refused.stderr[-500:])
