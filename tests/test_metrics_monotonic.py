"""Metrics Prometheus can use: counters count events from durable rows, so retrying a batch or
housekeeping old data never lowers a ``_total``; state counts are gauges whose series do not
vanish; promtool accepts the /metrics output and the shipped rules, and the rules' unit tests
pass."""

from __future__ import annotations

import shutil
import subprocess
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
import yaml
from django.core.management import call_command
from django.db import close_old_connections, connection
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from batches.executor import run_batch
from batches.models import BatchOperation, BatchStatus
from batches.services import create_batch
from monitoring.alerts.escalation import escalate_pass
from monitoring.alerts.lifecycle import raise_alert
from monitoring.models import Alert, AlertSeverity, NotificationChannel
from monitoring.observability import snapshot
from opsconsole.counters import count_event, read_counters
from opsconsole.models import EventCounter
from tests.conftest import reply, skip_or_fail

DOCS = Path(__file__).resolve().parent.parent / "docs"

# Families whose samples Prometheus treats as monotonic.
MONOTONIC_TYPES = {"counter", "histogram", "summary"}


@pytest.fixture(autouse=True)
def fresh_snapshot(settings):
    from django.core.cache import caches

    settings.METRICS_SNAPSHOT_SECONDS = 0  # every scrape rebuilds: the test reads the database
    settings.METRICS_TOKEN = None
    settings.BATCH_EXECUTOR_DELAY = 0
    settings.BATCH_RETRY_BACKOFF = 0.01
    settings.BATCH_OPERATION_TIMEOUT = 20

    def forget() -> None:
        snapshot.reset_local()
        caches["default"].delete(snapshot.CACHE_KEY)

    forget()
    yield
    forget()


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        skip_or_fail(
            "promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)"
        )
    return path  # type: ignore[return-value]


def monotonic_samples(text: str) -> dict[tuple[str, tuple], float]:
    found: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        if family.type not in MONOTONIC_TYPES:
            continue
        for s in family.samples:
            if s.name.endswith("_created"):
                continue  # creation timestamps of process-local client metrics, not counts
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def operations_text(client) -> str:
    """The operations snapshot only: the per-process django-prometheus part counts this test
    client's own requests, which is not what is under test here."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return snapshot.current().text


def assert_nothing_decreased(before: dict, after: dict, step: str) -> None:
    vanished = sorted(set(before) - set(after))
    assert not vanished, f"{step}: counter series vanished: {vanished}"
    lowered = {k: (before[k], after[k]) for k in before if after[k] < before[k]}
    assert not lowered, f"{step}: counters went down: {lowered}"


def check_metrics(text: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_no_counter_decreases_across_a_retry_and_housekeeping(db, client, http_server):
    """Acceptance: scrape, retry a failed batch, housekeep old data, scrape again."""
    fixed: set[str] = set()

    def handler(request):
        key = request.path.rsplit("/", 1)[-1]
        if key.startswith("bad") and key not in fixed:
            return reply(400, "no such thing")
        return reply(200, '{"ok": true}', "application/json")

    server = http_server(handler)
    batch = create_batch(
        {
            "operation": "http",
            "creator": "tests",
            "items": ["a", "b", "bad1", "bad2"],
            "payload": {"url": f"{server.url}/items/{{key}}", "timeout": 2},
        }
    )
    assert run_batch(str(batch.pk)) == BatchStatus.COMPLETED_WITH_ERRORS

    # An alert notified through a real webhook, acknowledged and resolved.
    NotificationChannel.objects.create(name="oncall-webhook", kind="webhook", url=server.url)
    opened = timezone.now()
    raise_alert("manual:disk", AlertSeverity.CRITICAL, "disk filling")
    assert escalate_pass().sent == 1
    alert = Alert.objects.get(dedup_key="manual:disk")
    with time_machine.travel(opened + timedelta(minutes=3), tick=False):
        assert alert.acknowledge("oncall")
        assert alert.resolve("oncall")

    scrapes = [monotonic_samples(operations_text(client))]
    first = scrapes[0]
    assert first[("batch_failures_total", (("operation_type", "http"),))] == 2
    assert first[("opsconsole_notifications_total", (("channel", "oncall-webhook"), ("outcome", "sent")))] == 1  # fmt: skip
    assert first[("opsconsole_notifications_total", (("channel", "oncall-webhook"), ("outcome", "failed")))] == 0  # fmt: skip
    assert first[("opsconsole_alert_time_to_acknowledge_seconds_count", ())] == 1

    # Retry: the failed items go back to pending (the old counter fell from 2 to 0 here, and
    # the completed_with_errors series vanished).
    assert BatchOperation.objects.get(pk=batch.pk).retry_failed() == 2
    scrapes.append(monotonic_samples(operations_text(client)))
    assert_nothing_decreased(scrapes[-2], scrapes[-1], "after retry")

    fixed.add("bad1")  # one of them now succeeds, the other fails again: a second failure event
    assert run_batch(str(batch.pk)) == BatchStatus.COMPLETED_WITH_ERRORS
    scrapes.append(monotonic_samples(operations_text(client)))
    assert_nothing_decreased(scrapes[-2], scrapes[-1], "after the re-run")

    # Housekeeping long after: the finished batch and the resolved alert (with its
    # notifications) are deleted.
    with time_machine.travel(timezone.now() + timedelta(days=200), tick=False):
        call_command("housekeeping", stdout=StringIO())
        assert not BatchOperation.objects.exists() and not Alert.objects.exists()
        text = operations_text(client)
    scrapes.append(monotonic_samples(text))
    assert_nothing_decreased(scrapes[-2], scrapes[-1], "after housekeeping")

    last = scrapes[-1]
    op = (("operation_type", "http"),)
    assert last[("batch_operations_created_total", op)] == 1
    assert last[("batch_failures_total", op)] == 3  # two, then one of them again
    assert last[("batch_operations_total", (*op, ("status", "completed_with_errors")))] == 2
    assert last[("batch_operations_total", (*op, ("status", "completed")))] == 0
    assert last[("batch_processing_duration_seconds_count", ())] == 2
    assert last[("opsconsole_notifications_total", (("channel", "oncall-webhook"), ("outcome", "sent")))] == 1  # fmt: skip
    assert last[("opsconsole_alert_time_to_acknowledge_seconds_count", ())] == 1
    assert last[("opsconsole_alert_time_to_acknowledge_seconds_sum", ())] == pytest.approx(
        180, abs=1
    )
    # The state gauge dropped to zero with the rows, as a gauge should.
    state = by_labels(text, "batch_operations")  # the gauge, beside batch_operations_total
    assert state[(*op, ("status", "completed_with_errors"))] == 0

    full = client.get("/metrics").content.decode()
    done = check_metrics(full)
    print("promtool check metrics:", repr(done.stdout + done.stderr))


def test_state_counts_are_gauges_whose_series_stay_when_a_batch_changes_status(db, client):
    batch = create_batch(
        {"operation": "http", "creator": "t", "items": ["a"], "payload": {"url": "http://x/{key}"}}
    )
    text = operations_text(client)
    assert "# TYPE batch_operations gauge" in text
    assert "# TYPE batch_operations_total counter" in text
    before = by_labels(text, "batch_operations")
    assert before[(("operation_type", "http"), ("status", "pending"))] == 1
    assert by_labels(text, "batch_pending_operations") == {(): 1}

    batch.cancel()
    text = operations_text(client)
    after = by_labels(text, "batch_operations")
    assert set(before) <= set(after)  # no series vanished: pending is now 0, cancelled 1
    assert after[(("operation_type", "http"), ("status", "pending"))] == 0
    assert after[(("operation_type", "http"), ("status", "cancelled"))] == 1
    assert by_labels(text, "batch_pending_operations") == {(): 0}
    finished = by_labels(text, "batch_operations_total")
    assert finished[(("operation_type", "http"), ("status", "cancelled"))] == 1


def by_labels(text: str, sample: str) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample
    }


def test_a_rolled_back_event_is_not_counted_and_a_negative_amount_is_refused(db):
    from django.db import transaction

    count_event("things_total", 2, kind="x")
    with pytest.raises(RuntimeError), transaction.atomic():
        count_event("things_total", 5, kind="x")
        raise RuntimeError("the event's own transaction fails")
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="amount must be a finite number >= 0"):
            count_event("things_total", bad, kind="x")
    assert [s.value for s in read_counters("things_total")["things_total"]] == [2]


def test_a_long_label_in_any_script_fits_its_series(db):
    name = "Дежурная-смена-" * 6 + "канал"  # a channel name near its 100-character limit
    count_event("opsconsole_notifications_total", channel=name[:100], outcome="sent")
    count_event("opsconsole_notifications_total", channel=name[:100], outcome="sent")
    [series] = read_counters("opsconsole_notifications_total")["opsconsole_notifications_total"]
    assert series.labels == {"channel": name[:100], "outcome": "sent"} and series.value == 2


def test_concurrent_increments_of_one_series_are_all_counted(transactional_db):
    """Four threads, each with its own connection, add to one series at once: the upsert adds
    in place, so no increment is lost (PostgreSQL: row lock; SQLite: the write lock)."""
    threads, rounds = 4, 25
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(rounds):
                count_event("concurrent_total", 1, series="one")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors and not any(w.is_alive() for w in workers)
    assert EventCounter.objects.get(name="concurrent_total").value == threads * rounds
    assert EventCounter.objects.filter(name="concurrent_total").count() == 1


def test_shipped_rules_pass_promtool_check_and_the_rule_unit_tests(tmp_path):
    """The rules ``manage.py prometheus_rules`` prints, written where the unit-test file
    expects them (promtool reads rule_files relative to the test file)."""
    tool = promtool()
    out = StringIO()
    call_command("prometheus_rules", stdout=out)
    rules_file = tmp_path / "opsconsole-rules.yml"
    rules_file.write_text(out.getvalue())
    tests_file = tmp_path / "prometheus-rules.test.yaml"
    shutil.copy(DOCS / "prometheus-rules.test.yaml", tests_file)

    checked = subprocess.run(
        [tool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    print("promtool check rules:", repr(checked.stdout + checked.stderr))
    tested = subprocess.run(
        [tool, "test", "rules", tests_file.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    print("promtool test rules:", repr(tested.stdout + tested.stderr))

    cases = yaml.safe_load(tests_file.read_text())
    assert cases["rule_files"] == [rules_file.name]
    fired = {
        case["alertname"]
        for test in cases["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert len(fired) >= 3, fired
