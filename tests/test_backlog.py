"""Backlog entries: adding, processing with real webhook receivers, API, check kind, metrics,
admin."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError, transaction

from backlog import services
from backlog.models import BacklogEntry, BacklogStatus
from opsconsole.api import BadRequest
from tests.conftest import reply

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def webhook(settings, url: str, source: str = "users") -> None:
    settings.BACKLOG_HANDLERS = {source: f"webhook:{url}"}


# --- adding ---------------------------------------------------------------------------------------


def test_enqueue_twice_leaves_one_pending_entry():
    first = services.enqueue("users", "42", "profile changed")
    second = services.enqueue("users", "42", "again")
    assert first.was_created and not second.was_created
    assert second.pk == first.pk
    assert BacklogEntry.objects.filter(status=BacklogStatus.PENDING).count() == 1


def test_database_refuses_a_second_pending_entry_for_a_key():
    services.enqueue("users", "42")
    with pytest.raises(IntegrityError), transaction.atomic():
        BacklogEntry.objects.create(source="users", key="42")


def test_same_key_may_be_pending_again_once_the_first_is_processed():
    first = services.enqueue("users", "42")
    BacklogEntry.objects.filter(pk=first.pk).update(status=BacklogStatus.PROCESSED)
    second = services.enqueue("users", "42")
    assert second.was_created and second.pk != first.pk


def test_same_key_in_two_sources_are_two_entries():
    services.enqueue("users", "42")
    services.enqueue("orders", "42")
    assert BacklogEntry.objects.count() == 2


def test_enqueue_refuses_bad_input_and_writes_nothing():
    with pytest.raises(BadRequest) as info:
        services.enqueue("bad source!", "", payload=[1, 2])  # type: ignore[arg-type]
    assert set(info.value.details) == {"source", "key", "payload"}
    assert BacklogEntry.objects.count() == 0


def test_enqueue_many_skips_keys_already_pending_and_duplicates_in_the_input():
    services.enqueue("default", "a")
    specs = services.parse_entry_lines(
        ["a", "b", "b", "# comment", "", '{"key": "c", "payload": {"x": 1}}']
    )
    result = services.enqueue_many(specs)
    assert (result.added, result.already_pending) == (2, 2)
    assert BacklogEntry.objects.get(key="c").payload == {"x": 1}
    assert BacklogEntry.objects.count() == 3


def test_parse_entry_lines_names_the_bad_line():
    with pytest.raises(BadRequest) as info:
        services.parse_entry_lines(["ok", '{"key": "x", "payload": 3}'])
    assert "line 2" in str(info.value)


# --- processing -----------------------------------------------------------------------------------


def test_webhook_successes_become_processed(settings, http_server):
    server = http_server(lambda request: reply(200, "ok"))
    webhook(settings, server.url + "/sync")
    for key in ("1", "2", "3"):
        services.enqueue("users", key, "changed", {"n": key})
    report = services.process()
    assert (report.processed, report.retrying, report.failed) == (3, 0, 0)
    assert set(BacklogEntry.objects.values_list("status", flat=True)) == {BacklogStatus.PROCESSED}
    bodies = sorted((r.json() for r in server.requests), key=lambda body: body["key"])
    assert [b["key"] for b in bodies] == ["1", "2", "3"]
    assert bodies[0]["payload"] == {"n": "1"} and bodies[0]["source"] == "users"
    assert server.requests[0].method == "POST" and server.requests[0].path == "/sync"
    entry = BacklogEntry.objects.get(key="1")
    assert entry.attempts == 1 and entry.processed_at is not None


def test_receiver_failing_twice_then_succeeding_is_retried_with_backoff(settings, http_server):
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        return reply(503, "busy") if calls["n"] <= 2 else reply(200)

    webhook(settings, http_server(flaky).url)
    with time_machine.travel(START, tick=False) as traveller:
        services.enqueue("users", "7")
        assert services.process().retrying == 1
        entry = BacklogEntry.objects.get()
        assert entry.status == BacklogStatus.PENDING and entry.attempts == 1
        assert "HTTP 503" in entry.last_error
        first_delay = entry.next_attempt_at - START
        # Not due yet: a run now does nothing.
        assert services.process().handled == 0
        traveller.shift(first_delay)
        assert services.process().retrying == 1
        entry.refresh_from_db()
        second_delay = entry.next_attempt_at - (START + first_delay)
        assert second_delay > first_delay  # backoff grows
        traveller.shift(second_delay)
        assert services.process().processed == 1
    entry.refresh_from_db()
    assert entry.status == BacklogStatus.PROCESSED and entry.attempts == 3 and calls["n"] == 3


def test_always_failing_receiver_ends_failed_after_max_attempts_with_error_kept(
    settings, http_server
):
    settings.BACKLOG_MAX_ATTEMPTS = 3
    server = http_server(lambda request: reply(500, "database down"))
    webhook(settings, server.url)
    with time_machine.travel(START, tick=False) as traveller:
        services.enqueue("users", "9")
        for _ in range(5):
            services.process()
            traveller.shift(timedelta(hours=2))
    entry = BacklogEntry.objects.get()
    assert entry.status == BacklogStatus.FAILED
    assert entry.attempts == 3 and len(server.requests) == 3
    assert "HTTP 500" in entry.last_error and "database down" in entry.last_error


def test_missing_handler_fails_with_the_settings_name(settings):
    settings.BACKLOG_HANDLERS = {}
    services.enqueue("orders", "1")
    report = services.process()
    entry = BacklogEntry.objects.get()
    assert report.failed == 1 and entry.status == BacklogStatus.FAILED
    assert "BACKLOG_HANDLERS" in entry.last_error and "orders" in entry.last_error


def test_unreachable_webhook_is_retried(settings):
    from tests.conftest import closed_port

    webhook(settings, f"http://127.0.0.1:{closed_port()}/")
    services.enqueue("users", "1")
    assert services.process().retrying == 1
    assert "ConnectError" in BacklogEntry.objects.get().last_error


def record_sync(entry):
    if entry.payload.get("fail"):
        raise ValueError("upstream said no")
    SYNCED.append(entry.key)


SYNCED: list[str] = []


def test_dotted_path_handler_is_called_with_the_entry(settings):
    SYNCED.clear()
    settings.BACKLOG_HANDLERS = {"users": "tests.test_backlog.record_sync"}
    services.enqueue("users", "ok")
    services.enqueue("users", "bad", payload={"fail": True})
    report = services.process()
    assert SYNCED == ["ok"]
    assert (report.processed, report.retrying) == (1, 1)
    assert "ValueError: upstream said no" in BacklogEntry.objects.get(key="bad").last_error


def test_process_respects_limit_and_source(settings, http_server):
    server = http_server()
    settings.BACKLOG_HANDLERS = {
        "users": f"webhook:{server.url}",
        "orders": f"webhook:{server.url}",
    }
    for key in range(5):
        services.enqueue("users", str(key))
        services.enqueue("orders", str(key))
    assert services.process(limit=3, source="users").processed == 3
    assert BacklogEntry.objects.filter(status=BacklogStatus.PROCESSED, source="orders").count() == 0
    assert len(server.requests) == 3


def test_dry_run_changes_no_row_and_says_what_it_would_do(settings, http_server):
    server = http_server()
    webhook(settings, server.url)
    services.enqueue("users", "1")
    services.enqueue("ghost", "2")
    snapshot = list(BacklogEntry.objects.order_by("id").values())
    plan = services.dry_run()
    assert list(BacklogEntry.objects.order_by("id").values()) == snapshot
    assert plan["would_process"] == 2
    assert plan["by_source"]["users"]["handler"] == f"POST {server.url}"
    assert "BACKLOG_HANDLERS" in plan["by_source"]["ghost"]["handler"]
    assert server.requests == []


def test_entry_held_by_a_dead_worker_is_released_after_the_claim_timeout(settings, http_server):
    webhook(settings, http_server().url)
    with time_machine.travel(START, tick=False) as traveller:
        services.enqueue("users", "1")
        claimed = services.claim(10, now=START)
        assert len(claimed) == 1
        assert services.process().handled == 0  # still held
        traveller.shift(timedelta(minutes=20))
        report = services.process()
    assert report.released == 1 and report.processed == 1


def test_failed_retry_does_not_collide_with_a_newer_pending_entry(settings, http_server):
    webhook(settings, http_server(lambda r: reply(500)).url)
    services.enqueue("users", "1")
    [held] = services.claim(1, now=held_now())
    services.enqueue("users", "1")  # the key changed again while it was being processed
    report = services.ProcessReport()
    services._record_failure(held, "boom", permanent=False, max_attempts=5, report=report)
    held.refresh_from_db()
    assert held.status == BacklogStatus.FAILED and "newer pending entry" in held.last_error
    assert BacklogEntry.objects.filter(status=BacklogStatus.PENDING).count() == 1


def held_now():
    from django.utils import timezone

    return timezone.now()


def test_retry_failed_and_requeue_skip_keys_already_pending(settings):
    settings.BACKLOG_HANDLERS = {}
    services.enqueue("x", "1")
    services.enqueue("x", "2")
    services.process()
    services.enqueue("x", "2")
    requeued, skipped = services.retry_failed("x")
    assert (requeued, skipped) == (1, 1)
    assert BacklogEntry.objects.filter(status=BacklogStatus.PENDING).count() == 2
    assert BacklogEntry.objects.get(key="1", status=BacklogStatus.PENDING).attempts == 0


# --- status, API ----------------------------------------------------------------------------------


def test_stats_counts_by_status_and_source_with_oldest_age():
    with time_machine.travel(START, tick=False) as traveller:
        services.enqueue("users", "1")
        traveller.shift(timedelta(seconds=90))
        services.enqueue("orders", "2")
        done = services.enqueue("orders", "3")
        services.mark_processed(BacklogEntry.objects.filter(pk=done.pk))
        figures = services.stats()
    assert figures["pending"] == 2 and figures["processed"] == 1 and figures["failed"] == 0
    assert figures["by_source"]["orders"] == {
        "pending": 1,
        "processing": 0,
        "processed": 1,
        "failed": 0,
    }
    assert figures["oldest_pending_age_seconds"] == 90
    assert figures["processed_last_hour"] == 1


def test_api_adds_one_entry_with_write_key(client, api_key_factory):
    key = api_key_factory("write")
    response = client.post(
        "/api/backlog/",
        json.dumps({"source": "users", "key": "5", "reason": "signup"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 201
    assert response.json()["added"] == 1
    assert BacklogEntry.objects.get().reason == "signup"


def test_api_adds_a_list_and_reports_already_pending(client, api_key_factory):
    key = api_key_factory("write")
    services.enqueue("users", "1")
    body = [{"source": "users", "key": "1"}, {"source": "users", "key": "2", "payload": {"a": 1}}]
    response = client.post(
        "/api/backlog/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 201
    assert (response.json()["added"], response.json()["already_pending"]) == (1, 1)


def test_api_refuses_bad_entries_and_writes_nothing(client, api_key_factory):
    key = api_key_factory("write")
    body = [{"key": "ok"}, {"key": ""}, {"key": "x", "payload": "nope", "colour": "red"}]
    response = client.post(
        "/api/backlog/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 400
    details = response.json()["details"]
    assert set(details) == {"[1].key", "[2].payload", "[2].colour"}
    assert BacklogEntry.objects.count() == 0


def test_api_add_needs_a_write_key(client, api_key_factory):
    response = client.post(
        "/api/backlog/",
        json.dumps({"key": "1"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key_factory('read')}",
    )
    assert response.status_code == 403
    assert BacklogEntry.objects.count() == 0


def test_api_stats_with_read_key(client, api_key_factory):
    services.enqueue("users", "1")
    response = client.get(
        "/api/backlog/stats/", HTTP_AUTHORIZATION=f"Bearer {api_key_factory('read')}"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["pending"] == 1 and body["by_source"]["users"]["pending"] == 1
    assert {
        "processing",
        "processed",
        "failed",
        "oldest_pending_age_seconds",
        "processed_last_hour",
    } <= set(body)
    assert client.get("/api/backlog/stats/").status_code == 401


# --- check kind, metrics, schedule, admin ---------------------------------------------------------


def test_backlog_check_warns_on_pending_count_and_oldest_age():
    from monitoring.checks.prober import ProbeContext
    from monitoring.kinds import Observation  # noqa: F401
    from monitoring.models import Check, CheckStatus

    count_check = Check.objects.create(
        name="backlog-size", kind="backlog", config={"metric": "pending"}, warn=1, crit=10
    )
    age_check = Check.objects.create(
        name="backlog-age",
        kind="backlog",
        config={"metric": "oldest_pending_age", "source": "users"},
    )
    with time_machine.travel(START, tick=False) as traveller:
        services.enqueue("users", "1")
        services.enqueue("users", "2")
        traveller.shift(timedelta(minutes=11))
        ctx = ProbeContext(1)
        count_obs = count_check.kind_impl.observe(count_check, ctx)
        age_obs = age_check.kind_impl.observe(age_check, ctx)
    assert count_obs.value == 2 and count_check.evaluate(count_obs)[0] == CheckStatus.WARNING
    assert (
        age_obs.value == 660 and age_check.evaluate(age_obs)[0] == CheckStatus.WARNING
    )  # default warn 10 min
    assert "2 pending" in count_obs.message


def test_backlog_check_config_is_validated():
    from monitoring.kinds import ConfigError, get_kind

    with pytest.raises(ConfigError) as info:
        get_kind("backlog").validate_config({"metric": "size", "colour": 1})
    assert {"config.metric", "config.colour"} <= set(info.value.errors)


def test_metric_collector_reports_entries_by_source_and_status():
    from django.utils import timezone

    from opsconsole.registries import collectors

    services.enqueue("users", "1")
    services.enqueue("users", "2")
    [family] = list(collectors()["backlog"](timezone.now()))
    assert family.name == "opsconsole_backlog_entries"
    samples = {(s.labels["source"], s.labels["status"]): s.value for s in family.samples}
    assert samples[("users", "pending")] == 2 and samples[("users", "failed")] == 0


def test_processing_is_a_five_minute_job_with_a_command():
    from opsconsole.registries import periodic_jobs

    [job] = [job for job in periodic_jobs() if job.func == "backlog.services.process_scheduled"]
    assert job.minutes == 5 and job.command == "backlog process"


def test_scheduled_task_processes_due_entries(settings, http_server):
    webhook(settings, http_server().url)
    services.enqueue("users", "1")
    assert services.process_scheduled().startswith("processed 1")


def test_admin_lists_searches_and_requeues(staff_client, settings):
    settings.BACKLOG_HANDLERS = {}
    services.enqueue("users", "needle")
    services.enqueue("users", "hay")
    services.process()
    page = staff_client.get("/admin/backlog/backlogentry/?q=needle&status__exact=failed")
    assert page.status_code == 200
    assert b"needle" in page.content and b">hay<" not in page.content
    failed = BacklogEntry.objects.get(key="needle")
    response = staff_client.post(
        "/admin/backlog/backlogentry/",
        {"action": "requeue", "_selected_action": [failed.pk]},
    )
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == BacklogStatus.PENDING and failed.attempts == 0
    staff_client.post(
        "/admin/backlog/backlogentry/",
        {"action": "mark_processed", "_selected_action": [failed.pk]},
    )
    failed.refresh_from_db()
    assert failed.status == BacklogStatus.PROCESSED
