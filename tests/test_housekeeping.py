"""Retention: exactly what the rules say goes, the last 100 runs and every status change
per check stay, --dry-run removes nothing, deletes run in chunks."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Task

from backlog.models import BacklogEntry
from batches.models import BatchItem, BatchOperation
from monitoring.models import Alert, AlertEvent, Check, CheckRun, Report
from opsconsole import housekeeping

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    """Rows on both sides of every retention line; returns the ids that must survive."""
    now = timezone.now()
    keep: dict[str, set] = {}
    # check A: 150 runs, one every 6 hours back from now -> most older than the retention
    a = Check.objects.create(name="a", kind="http", config={"url": "http://127.0.0.1:9/"})
    runs = [
        CheckRun(check_obj=a, status="ok", created_at=now - timedelta(hours=6 * i))
        for i in range(150)
    ]
    runs[140].status_changed = True  # an old status change: kept whatever its age
    runs[120].status_changed = True
    CheckRun.objects.bulk_create(runs)
    ordered = list(
        CheckRun.objects.filter(check_obj=a)
        .order_by("-created_at", "-id")
        .values_list("id", "status_changed", "created_at")
    )
    cutoff = now - timedelta(days=settings.CHECKRUN_RETENTION_DAYS)
    keep["a"] = {
        rid for i, (rid, changed, at) in enumerate(ordered) if i < 100 or changed or at >= cutoff
    }
    # check B: 50 runs, all a year old -> all kept (fewer than the last 100)
    b = Check.objects.create(name="b", kind="http", config={"url": "http://127.0.0.1:9/"})
    CheckRun.objects.bulk_create(
        [
            CheckRun(check_obj=b, status="ok", created_at=now - timedelta(days=365, minutes=i))
            for i in range(50)
        ]
    )
    keep["b"] = set(CheckRun.objects.filter(check_obj=b).values_list("id", flat=True))

    old_report = Report.objects.create(title="old", text="x", created_at=now - timedelta(days=31))
    new_report = Report.objects.create(title="new", text="x", created_at=now - timedelta(days=29))
    keep["reports"] = {new_report.pk}
    del old_report

    def task(tid: str, success: bool, age: timedelta) -> Task:
        return Task(
            id=tid, name=tid, func="x.y", started=now - age, stopped=now - age, success=success
        )

    Task.objects.bulk_create(
        [
            task("s-old", True, timedelta(hours=25)),
            task("s-new", True, timedelta(hours=23)),
            task("f-old", False, timedelta(days=8)),
            task("f-new", False, timedelta(days=6)),
        ]
    )
    keep["tasks"] = {"s-new", "f-new"}

    BacklogEntry.objects.create(
        source="s", key="old", status="processed", processed_at=now - timedelta(days=8)
    )
    fresh = BacklogEntry.objects.create(
        source="s", key="new", status="processed", processed_at=now - timedelta(days=6)
    )
    pending = BacklogEntry.objects.create(
        source="s", key="pending", status="pending", created_at=now - timedelta(days=60)
    )
    keep["backlog"] = {fresh.pk, pending.pk}

    old = Alert.objects.create(
        dedup_key="x1",
        title="old",
        severity="warning",
        status="resolved",
        resolved_at=now - timedelta(days=181),
    )
    AlertEvent.objects.create(alert=old, kind="opened")
    recent = Alert.objects.create(
        dedup_key="x2",
        title="recent",
        severity="warning",
        status="resolved",
        resolved_at=now - timedelta(days=10),
    )
    active = Alert.objects.create(
        dedup_key="x3",
        title="open",
        severity="critical",
        status="open",
        opened_at=now - timedelta(days=400),
    )
    keep["alerts"] = {recent.pk, active.pk}

    old = BatchOperation.objects.create(
        operation="http", creator="t", status="completed", finished_at=now - timedelta(days=91)
    )
    BatchItem.objects.bulk_create([BatchItem(batch=old, key=f"k{i}") for i in range(30)])
    recent = BatchOperation.objects.create(
        operation="http", creator="t", status="failed", finished_at=now - timedelta(days=89)
    )
    running = BatchOperation.objects.create(
        operation="http", creator="t", status="running", created_at=now - timedelta(days=200)
    )
    BatchItem.objects.bulk_create([BatchItem(batch=running, key="r")])
    keep["batches"] = {recent.pk, running.pk}
    return keep


def snapshot_counts() -> dict[str, int]:
    return {
        "runs": CheckRun.objects.count(),
        "reports": Report.objects.count(),
        "tasks": Task.objects.count(),
        "backlog_backlogentry": BacklogEntry.objects.count(),
        "monitoring_alert": Alert.objects.count(),
        "batches_batchoperation": BatchOperation.objects.count(),
        "batches_batchitem": BatchItem.objects.count(),
    }


def test_housekeeping_removes_exactly_what_the_retention_rules_say(seeded):
    out = StringIO()
    call_command("housekeeping", stdout=out)
    assert (
        set(CheckRun.objects.filter(check_obj__name="a").values_list("id", flat=True))
        == seeded["a"]
    )
    assert (
        set(CheckRun.objects.filter(check_obj__name="b").values_list("id", flat=True))
        == seeded["b"]
    )
    # every status change survives, and at least the last 100 of each check
    assert CheckRun.objects.filter(check_obj__name="a", status_changed=True).count() == 2
    assert CheckRun.objects.filter(check_obj__name="a").count() >= 100
    assert set(Report.objects.values_list("id", flat=True)) == seeded["reports"]
    assert set(Task.objects.values_list("id", flat=True)) == seeded["tasks"]
    assert set(BacklogEntry.objects.values_list("id", flat=True)) == seeded["backlog"]
    assert set(Alert.objects.values_list("id", flat=True)) == seeded["alerts"]
    assert not AlertEvent.objects.filter(alert__dedup_key="x1").exists()
    assert set(BatchOperation.objects.values_list("id", flat=True)) == seeded["batches"]
    assert BatchItem.objects.count() == 1
    text = out.getvalue()
    assert "check runs" in text and "removed" in text and "Removed" in text
    removed_runs = 150 - len(seeded["a"])
    assert f"removed {removed_runs:>9}" in text


def test_dry_run_removes_nothing_and_reports_the_same_counts(seeded):
    before = snapshot_counts()
    out = StringIO()
    call_command("housekeeping", "--dry-run", stdout=out)
    assert snapshot_counts() == before
    text = out.getvalue()
    assert f"would remove {150 - len(seeded['a']):>9}" in text
    assert "Dry run: would remove" in text


def test_deletes_run_in_chunks(seeded, monkeypatch):
    monkeypatch.setattr(housekeeping, "FIRST_CHUNK", 5)
    monkeypatch.setattr(housekeeping, "TARGET_SECONDS", 0.00001)  # keep the chunks small
    monkeypatch.setattr(housekeeping, "MIN_CHUNK", 5)
    outcome = housekeeping.run_housekeeping()
    runs = next(r for r in outcome.results if r.name == "check runs")
    assert runs.removed == 150 - len(seeded["a"])
    assert runs.transactions >= runs.removed // 5
    assert (
        set(CheckRun.objects.filter(check_obj__name="a").values_list("id", flat=True))
        == seeded["a"]
    )


def test_housekeeping_is_scheduled_daily_and_the_report_every_30_minutes():
    from opsconsole.registries import periodic_jobs

    jobs = {job.name: job for job in periodic_jobs()}
    assert jobs["housekeeping"].minutes == 1440 and jobs["housekeeping"].command == "housekeeping"
    assert jobs["opsreport"].minutes == 30 and jobs["opsreport"].command == "opsreport"
    from django.utils.module_loading import import_string

    assert callable(import_string(jobs["housekeeping"].func))
    assert callable(import_string(jobs["opsreport"].func))
