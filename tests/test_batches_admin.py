"""Batches for operators: the admin, `manage.py batches`, the check kind, metrics and activity."""

from __future__ import annotations

import io
import json
import subprocess
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from batches.models import BatchItem, BatchOperation, BatchStatus, ItemStatus
from batches.services import create_batch
from tests.conftest import manage

HTTP = {"url": "https://api.example/items/{key}"}


def finished_batch(creator="ops", ok=2, bad=1, seconds=7.0, operation="http") -> BatchOperation:
    now = timezone.now()
    batch = create_batch(
        {
            "operation": operation,
            "creator": creator,
            "items": list(range(ok + bad)),
            "payload": HTTP,
        }
    )
    items = list(batch.items.order_by("id"))
    for item in items[:ok]:
        item.status, item.finished_at, item.attempts = ItemStatus.SUCCEEDED, now, 1
    for item in items[ok:]:
        item.status, item.finished_at, item.error, item.attempts = (
            ItemStatus.FAILED,
            now,
            "HTTP 400",
            1,
        )
    BatchItem.objects.bulk_update(items, ["status", "finished_at", "error", "attempts"])
    status = BatchStatus.COMPLETED_WITH_ERRORS if bad else BatchStatus.COMPLETED
    BatchOperation.objects.filter(pk=batch.pk).update(
        status=status,
        succeeded_items=ok,
        failed_items=bad,
        started_at=now - timedelta(seconds=seconds),
        finished_at=now,
    )
    batch.refresh_from_db()
    return batch


# --- admin -----------------------------------------------------------------------------------


def test_admin_lists_batches_with_progress_filters_and_search(staff_client):
    done = finished_batch(creator="alice")
    other = create_batch({"operation": "http", "creator": "bob", "items": ["x"], "payload": HTTP})
    page = staff_client.get("/admin/batches/batchoperation/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "3/3" in html and "0/1" in html  # the progress column
    assert "alice" in html and "bob" in html
    filtered = staff_client.get(
        "/admin/batches/batchoperation/?status=completed_with_errors"
    ).content.decode()
    assert str(done.id) in filtered and str(other.id) not in filtered
    assert (
        str(other.id)
        in staff_client.get(f"/admin/batches/batchoperation/?q={other.id}").content.decode()
    )
    by_creator = staff_client.get("/admin/batches/batchoperation/?q=ali").content.decode()
    assert str(done.id) in by_creator and str(other.id) not in by_creator
    assert (
        staff_client.get("/admin/batches/batchoperation/?operation=http&creator=bob").status_code
        == 200
    )


def test_admin_batch_page_shows_items_and_links_to_the_paginated_item_list(staff_client):
    batch = finished_batch()
    page = staff_client.get(f"/admin/batches/batchoperation/{batch.pk}/change/").content.decode()
    assert "HTTP 400" in page and f"batch__id__exact={batch.pk}" in page
    items = staff_client.get(f"/admin/batches/batchitem/?batch__id__exact={batch.pk}")
    assert items.status_code == 200 and "HTTP 400" in items.content.decode()


def test_admin_actions_retry_failed_items_and_cancel(
    staff_client, django_capture_on_commit_callbacks
):
    done = finished_batch()
    running = create_batch(
        {"operation": "http", "creator": "c", "items": ["a", "b"], "payload": HTTP}
    )
    url = "/admin/batches/batchoperation/"
    staff_client.post(url, {"action": "retry_failed_items", "_selected_action": [str(done.pk)]})
    done.refresh_from_db()
    assert done.status == BatchStatus.PENDING and done.failed_items == 0
    assert done.items.filter(status=ItemStatus.PENDING).count() == 1
    staff_client.post(url, {"action": "cancel_batches", "_selected_action": [str(running.pk)]})
    running.refresh_from_db()
    assert running.status == BatchStatus.CANCELLED


# --- CLI -------------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("batches", *args, stdout=out)
    return out.getvalue()


def test_cli_create_list_show_retry_cancel(db):
    out = run(
        "create",
        "--operation",
        "http",
        "--creator",
        "cli",
        "--items",
        "a,b,c",
        "--payload",
        json.dumps(HTTP),
    )
    assert "created batch" in out and "3 items" in out
    batch = BatchOperation.objects.get(creator="cli")
    assert str(batch.id) in run("list", "--creator", "cli")
    shown = run("show", str(batch.id))
    assert "totalItems" in shown and "pending" in shown
    assert json.loads(run("show", str(batch.id), "--json"))["totalItems"] == 3
    assert "cancelled" in run("cancel", str(batch.id))
    with pytest.raises(CommandError, match="already finished"):
        run("cancel", str(batch.id))
    with pytest.raises(CommandError, match="nothing to retry"):
        run("retry", str(batch.id))
    done = finished_batch()
    assert "1 failed items queued again" in run("retry", str(done.id))
    assert "re-queued" in run("recover")


def test_cli_rejects_bad_input_with_a_clear_message_and_creates_nothing(db):
    with pytest.raises(CommandError, match="invalid batch"):
        run(
            "create",
            "--operation",
            "http",
            "--creator",
            "cli",
            "--items",
            "a,a",
            "--payload",
            json.dumps(HTTP),
        )
    with pytest.raises(CommandError, match="unknown batch"):
        run("show", "nope")
    with pytest.raises(CommandError, match="--payload is not valid JSON"):
        run("create", "--operation", "http", "--creator", "cli", "--items", "a", "--payload", "{")
    assert BatchOperation.objects.count() == 0


def test_cli_help_and_exit_code_in_a_real_process(subprocess_env):
    help_text = subprocess.run(
        manage("batches", "--help"), env=subprocess_env, capture_output=True, text=True, timeout=60
    )
    assert help_text.returncode == 0 and "recover" in help_text.stdout
    bad = subprocess.run(
        manage("batches", "show", "00000000-0000-0000-0000-000000000000"),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "unknown batch" in bad.stderr


# --- monitoring hooks --------------------------------------------------------------------------


def finished_by_the_executor(ok: int, bad: int, seconds: float) -> BatchOperation:
    """A batch whose outcomes are recorded the way a worker records them, so that its events
    (finish, failed items, duration) are counted."""
    from batches.executor import claim_chunk, record_outcomes

    batch = create_batch(
        {"operation": "http", "creator": "ops", "items": list(range(ok + bad)), "payload": HTTP}
    )
    start = timezone.now()
    BatchOperation.objects.filter(pk=batch.pk).update(status=BatchStatus.RUNNING, started_at=start)
    items = claim_chunk(batch.pk, ok + bad, 60, start)
    outcomes = [(item, "ok", {}) for item in items[:ok]]
    outcomes += [(item, "fail", "HTTP 400") for item in items[ok:]]
    record_outcomes(batch.pk, outcomes, start + timedelta(seconds=seconds))
    return batch


def test_metrics_are_computed_from_the_database(db):
    """Gauges from the rows as they are; counters and the histogram from the events counted as
    the batches were created and finished (tests/test_metrics_monotonic.py: they never fall)."""
    from opsconsole.registries import collectors

    finished_by_the_executor(ok=2, bad=1, seconds=7)
    finished_by_the_executor(ok=2, bad=0, seconds=45)
    create_batch({"operation": "http", "creator": "p", "items": ["a"], "payload": HTTP})
    families = list(collectors()["batches"](timezone.now()))
    assert {f.name for f in families} == {
        "batch_operations",  # a gauge and, as batch_operations_total, a counter
        "batch_operations_created",
        "batch_failures",
        "batch_pending_operations",
        "batch_processing_duration_seconds",
    }
    samples = [s for f in families for s in f.samples]

    def values(name: str) -> dict[tuple, float]:
        return {tuple(sorted(s.labels.values())): s.value for s in samples if s.name == name}

    state = values("batch_operations")
    assert state[("completed_with_errors", "http")] == 1
    assert state[("completed", "http")] == 1
    assert state[("http", "pending")] == 1
    assert state[("failed", "http")] == 0  # every status is a series, zeros included
    finished = values("batch_operations_total")
    assert finished[("completed", "http")] == 1
    assert finished[("completed_with_errors", "http")] == 1
    assert finished[("cancelled", "http")] == 0
    assert values("batch_operations_created_total")[("http",)] == 3
    assert values("batch_pending_operations") == {(): 1}
    assert values("batch_failures_total")[("http",)] == 1
    buckets = {
        s.labels["le"]: s.value
        for s in samples
        if s.name == "batch_processing_duration_seconds_bucket"
    }
    assert buckets == {"1.0": 0, "5.0": 0, "10.0": 1, "30.0": 1, "60.0": 2, "120.0": 2, "+Inf": 2}
    total = values("batch_processing_duration_seconds_sum")[()]
    assert total == pytest.approx(52, abs=0.5)


def test_activity_counts_items_and_batches_finished_in_the_window(db):
    from opsconsole.registries import activity_sources

    finished_batch(ok=3, bad=2)
    now = timezone.now()
    section = activity_sources()["batches"](now - timedelta(seconds=30), now + timedelta(seconds=1))
    assert section == {"items_finished": 5, "items_failed": 2, "batches_finished": 1}
    assert (
        activity_sources()["batches"](now - timedelta(hours=2), now - timedelta(hours=1))[
            "items_finished"
        ]
        == 0
    )


def test_check_kind_reports_pending_stuck_and_failure_rate(db):
    from monitoring.kinds import ConfigError, get_kind
    from monitoring.models import Check, CheckStatus

    kind = get_kind("batches")
    with pytest.raises(ConfigError):
        kind.validate_config({"metric": "bogus"})
    old = create_batch(
        {"operation": "http", "creator": "s", "items": ["a"], "payload": HTTP},
        now=timezone.now() - timedelta(minutes=11),
    )
    create_batch({"operation": "http", "creator": "s", "items": ["b"], "payload": HTTP})
    finished_batch(ok=1, bad=1)

    def observe(metric: str):
        check = Check(name=f"batches-{metric}", kind="batches", config={"metric": metric})
        observation = kind.observe(check, None)
        return observation, check.threshold_status(observation.value)

    pending, status = observe("pending")
    assert pending.value == 2 and status == CheckStatus.OK
    stuck, status = observe("stuck")
    assert (
        stuck.value == 1
        and status == CheckStatus.WARNING
        and str(old.id) in stuck.details["oldest"]
    )
    rate, status = observe("failure_rate")
    assert rate.value == 50 and status == CheckStatus.CRITICAL


def test_recovery_job_is_registered_with_its_command():
    from opsconsole.registries import periodic_jobs

    job = {j.name: j for j in periodic_jobs()}["batches-recover"]
    assert (
        job.minutes == 1
        and job.command == "batches recover"
        and job.func == "batches.executor.recover_task"
    )
