"""Issue 18: check runners (``runchecks --loop``), leases on slots, the batch write path.

Slots follow the previous slot, a claim is a lease that only its holder records, the database
refuses a second run of a slot, and real runner processes share the work: three on PostgreSQL
(one SIGKILLed mid-batch), two on SQLite.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import time
from collections import defaultdict
from datetime import timedelta

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.checks.checkfile import apply_document, validate_document
from monitoring.checks.runner import Runner, lease_seconds, runner_lag
from monitoring.kinds import Observation
from monitoring.models import Alert, Check, CheckRun
from monitoring.models.checks import (
    RUN_LAG_HISTOGRAM,
    PendingRun,
    next_slot,
    record_runs,
)
from tests.conftest import manage, reply, wait_for

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)


def value_checks(n: int, **fields) -> list[Check]:
    fields.setdefault("interval_seconds", 10)
    return [
        Check.objects.create(
            name=f"c{i:04d}", kind="sql_value", config={"sql": "SELECT 1"}, **fields
        )
        for i in range(n)
    ]


def pending_for(checks: list[Check], now, **observation) -> list[PendingRun]:
    return [
        PendingRun(
            c,
            Observation(**(observation or {"value": 1.0})),
            1.0,
            now,
            slot_at=c.lease_slot_at,
            lease_owner=c.lease_owner,
        )
        for c in checks
    ]


# --- slots -------------------------------------------------------------------------------------


def test_the_next_slot_follows_the_slot_not_the_finish_and_skips_when_far_behind(once_per_suite):
    slot = T0
    # Late by 7 s: still an interval after the slot, so intervals do not drift.
    assert next_slot(slot, 10, slot + timedelta(seconds=7)) == slot + timedelta(seconds=10)
    # A lease that ran out (25 s late): the missed slots run back to back, none lost.
    assert next_slot(slot, 10, slot + timedelta(seconds=25)) == slot + timedelta(seconds=10)
    # Far behind (all runners down for an hour): the latest slot, not 360 of them.
    assert next_slot(slot, 10, slot + timedelta(hours=1, seconds=3)) == slot + timedelta(hours=1)
    # A scheduled pass moves a check past its horizon: one pass runs it once.
    horizon = slot + timedelta(seconds=65)
    assert next_slot(slot, 10, slot, after=horizon) == slot + timedelta(seconds=70)


def test_a_check_file_takes_a_ten_second_interval():
    parsed = validate_document(
        {
            "checks": [
                {
                    "name": "fast",
                    "kind": "http",
                    "interval": "10s",
                    "timeout": "3s",
                    "config": {"url": "http://127.0.0.1:9/"},
                }
            ]
        }
    )
    apply_document(parsed)
    assert Check.objects.get(name="fast").interval_seconds == 10


# --- leases ------------------------------------------------------------------------------------


def test_a_claim_is_a_lease_that_only_its_holder_records():
    (check,) = value_checks(1)
    with time_machine.travel(T0, tick=False):
        claimed = Check.claim_due(T0, limit=10, owner="a:1:x", lease_for=lease_seconds)
        assert [c.pk for c in claimed] == [check.pk] and claimed[0].lease_slot_at == T0
        # Leased: not due for anyone else until the lease runs out.
        assert Check.claim_due(T0, limit=10, owner="b:2:y", lease_for=lease_seconds) == []
        intruder = pending_for(claimed, T0)[0]
        intruder.lease_owner = "b:2:y"
        record_runs([intruder])
        assert intruder.run is None and "lease" in intruder.error
        (mine,) = pending_for(claimed, T0 + timedelta(seconds=1))
        record_runs([mine])
    assert mine.run is not None and mine.run.slot_at == T0
    check.refresh_from_db()
    assert check.next_run_at == T0 + timedelta(seconds=10) and check.lease_owner == ""
    assert CheckRun.objects.get(check_obj=check).slot_at == T0


def test_an_expired_lease_gives_the_same_slot_to_another_runner_and_the_old_holder_loses_it():
    (check,) = value_checks(1)
    with time_machine.travel(T0, tick=False):
        (held,) = Check.claim_due(T0, limit=10, owner="dead:1:x", lease_for=lease_seconds)
    later = T0 + timedelta(seconds=lease_seconds([held]) + 1)
    with time_machine.travel(later, tick=False):
        (taken,) = Check.claim_due(later, limit=10, owner="alive:2:y", lease_for=lease_seconds)
        assert taken.lease_slot_at == T0, "the slot the dead runner held, not a new one"
        (late,) = pending_for([held], later)
        record_runs([late])
        assert late.run is None and "lost" in late.error
        (retry,) = pending_for([taken], later)
        record_runs([retry])
    assert retry.run is not None
    assert list(CheckRun.objects.filter(check_obj=check).values_list("slot_at", flat=True)) == [T0]
    # The missed slot after it is due at once (caught up), then the schedule goes on.
    check.refresh_from_db()
    assert check.next_run_at == T0 + timedelta(seconds=10)


def test_the_database_refuses_a_second_run_of_a_slot():
    (check,) = value_checks(1)
    CheckRun.objects.create(check_obj=check, status="ok", slot_at=T0)
    with pytest.raises(IntegrityError), transaction.atomic():
        CheckRun.objects.create(check_obj=check, status="ok", slot_at=T0)
    # Runs without a slot (pings, "run now") never collide.
    CheckRun.objects.create(check_obj=check, status="ok")
    CheckRun.objects.create(check_obj=check, status="ok")


def test_a_claim_never_takes_more_than_it_is_given_room_for():
    value_checks(30)
    claimed = Check.claim_due(timezone.now(), limit=12, owner="a:1:x", lease_for=lease_seconds)
    assert len(claimed) == 12
    assert Check.objects.filter(lease_owner="a:1:x").count() == 12


# --- the write path ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_batch_costs_at_most_three_statements_per_run():
    """Claim and record of 40 runs, counted as in production (no test transaction)."""
    checks = value_checks(40)
    for c in checks:  # steady state: healthy checks that already ran
        Check.objects.filter(pk=c.pk).update(status="ok", streak_status="ok", streak_count=3)
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        claimed = Check.claim_due(now, limit=40, owner="a:1:x", lease_for=lease_seconds)
        pending = pending_for(claimed, now)
        record_runs(pending)
    assert all(p.run is not None for p in pending) and CheckRun.objects.count() == 40
    statements = len(queries.captured_queries)
    assert statements / 40 <= 3, [q["sql"][:60] for q in queries.captured_queries]
    assert statements <= 12, [q["sql"][:60] for q in queries.captured_queries]
    assert not [q for q in queries.captured_queries if "monitoring_alert" in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_new_checks_first_healthy_runs_look_at_no_alert():
    """A fresh install's first pass moves every check from unknown to ok: a change, but
    with no alert to resolve it costs no alert or flapping lookup per check."""
    checks = value_checks(40)
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        claimed = Check.claim_due(now, limit=40, owner="a:1:x", lease_for=lease_seconds)
        record_runs(pending_for(claimed, now))
    assert CheckRun.objects.filter(status_changed=True).count() == 40
    assert {c.status for c in Check.objects.filter(pk__in=[c.pk for c in checks])} == {"ok"}
    assert len(queries.captured_queries) <= 12, [q["sql"][:60] for q in queries.captured_queries]
    assert not [q for q in queries.captured_queries if "monitoring_alert" in q["sql"]]


def test_a_batch_keeps_debounce_status_changes_and_alerts():
    checks = value_checks(3, debounce=2)
    for c in checks:
        Check.objects.filter(pk=c.pk).update(status="ok")
    outcomes = []
    for minute in range(2):
        now = T0 + timedelta(minutes=minute)
        with time_machine.travel(now, tick=False):
            claimed = Check.claim_due(now, limit=10, owner=f"r:{minute}", lease_for=lease_seconds)
            pending = pending_for(claimed[:1], now, status="critical", message="down")
            pending += pending_for(claimed[1:], now, value=1.0)
            record_runs(pending)
            outcomes.append({p.check.name: (p.run.status, p.check.status) for p in pending})
    assert outcomes[0]["c0000"] == ("critical", "ok"), "debounce: one failure is not enough"
    assert outcomes[1]["c0000"] == ("critical", "critical")
    assert outcomes[1]["c0001"] == ("ok", "ok")
    alert = Alert.objects.get(check_obj=checks[0])
    assert alert.status == "open" and Check.objects.get(pk=checks[0].pk).has_open_alert
    changed = CheckRun.objects.filter(check_obj=checks[0], status_changed=True)
    assert changed.count() == 1


def test_a_runner_claims_probes_and_records_with_its_lag_on_metrics_and_the_dashboard(
    http_server, staff_client
):
    server = http_server()
    for i in range(6):
        Check.objects.create(
            name=f"web-{i}", kind="http", config={"url": f"{server.url}/{i}"}, interval_seconds=10
        )
    runner = Runner(concurrency=4)
    deadline = time.monotonic() + 20
    while runner.recorded < 6 and time.monotonic() < deadline:
        runner.handle_one(wait=0.2)
    runner.finish()
    runs = list(CheckRun.objects.values_list("check_obj_id", "slot_at", "status"))
    assert len(runs) == 6 and all(slot is not None and s == "ok" for _, slot, s in runs)
    assert not Check.objects.exclude(lease_owner="").exists()
    metrics = staff_client.get("/metrics").content.decode()
    assert f"{RUN_LAG_HISTOGRAM}_count 6.0" in metrics
    panel = runner_lag(timezone.now())
    assert panel["runs"] == 6 and panel["p99"] < 10
    page = staff_client.get("/").content.decode()
    assert 'id="runner-lag-tile"' in page


def test_a_run_the_database_refuses_is_retried_alone_and_the_others_are_stored():
    good, bad = value_checks(2)
    good.name, bad.name = "good", "bad"
    Check.objects.filter(pk=good.pk).update(name="good")
    Check.objects.filter(pk=bad.pk).update(name="bad")
    now = timezone.now()
    claimed = Check.claim_due(now, limit=10, owner="a:1:x", lease_for=lease_seconds)
    by_name = {c.name: c for c in claimed}
    pending = pending_for([by_name["good"]], now)
    pending.append(
        PendingRun(
            by_name["bad"],
            # NaN is not JSON: the database refuses the details, and with them the batch.
            Observation(value=1, details={"ratio": float("nan")}),
            1.0,
            now,
            slot_at=by_name["bad"].lease_slot_at,
            lease_owner="a:1:x",
        )
    )
    record_runs(pending)
    assert pending[0].run is not None and pending[1].run is None
    assert "not recorded" in pending[1].error
    assert CheckRun.objects.filter(check_obj=good).count() == 1
    assert not CheckRun.objects.filter(check_obj=bad).exists()


# --- real runner processes ---------------------------------------------------------------------


def start_runners(env, n: int, tmp_path, concurrency: int = 50) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        err = open(tmp_path / f"runner-{i}.log", "w")  # noqa: SIM115 - closed by the test
        procs.append(
            subprocess.Popen(
                manage("runchecks", "--loop", "--concurrency", str(concurrency)),
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        )
    return procs


def wait_started(procs: list[subprocess.Popen], timeout: float = 60) -> None:
    """Until every runner has printed its "started" line (a busy machine may take seconds to
    start a Django process): the test's clock starts when all of them are claiming."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"runner {proc.pid} did not start within {timeout:g} s"
        line = proc.stdout.readline()
        assert " started: " in line, line


def stop_runners(procs: list[subprocess.Popen]) -> list[str]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        outputs.append(out)
    return outputs


def slots_by_check() -> dict[int, list]:
    slots: dict[int, list] = defaultdict(list)
    for check_id, slot in CheckRun.objects.filter(slot_at__isnull=False).values_list(
        "check_obj_id", "slot_at"
    ):
        slots[check_id].append(slot)
    return {k: sorted(v) for k, v in slots.items()}


def assert_every_slot_once(interval: int, until, tolerance: float) -> int:
    """Every check's slots an interval apart (none missed, none twice) up to ``until``."""
    step = timedelta(seconds=interval)
    total = 0
    for check_id, slots in slots_by_check().items():
        assert len(slots) == len(set(slots)), f"check {check_id} ran a slot twice"
        gaps = [b - a for a, b in zip(slots, slots[1:], strict=False) if b - a != step]
        assert not gaps, f"check {check_id} missed slots: {gaps}"
        assert slots[-1] + step > until - timedelta(seconds=tolerance), (
            f"check {check_id}: last slot {slots[-1]}, stopped at {until}"
        )
        total += len(slots)
    return total


@pytest.mark.django_db(transaction=True)
def test_two_runners_on_sqlite_share_the_work_without_locked_errors_or_duplicates(
    http_server, subprocess_env, tmp_path
):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite runners' test (PostgreSQL has its own)")

    def slow(request):
        time.sleep(1.5)
        return reply()

    # Each slot's 40 due checks are more than one runner takes at once (20 in flight, each
    # held 1.5 s, longer than a runner's 1 s poll): the other runner always finds the rest.
    server = http_server(slow)
    Check.objects.bulk_create(
        Check(
            name=f"web-{i}",
            kind="http",
            config={"url": f"{server.url}/{i}"},
            interval_seconds=5,
            timeout_seconds=3,
            warn=2500,
        )
        for i in range(40)
    )
    procs = start_runners(subprocess_env, 2, tmp_path, concurrency=20)
    try:
        wait_started(procs)
        wait_for(lambda: CheckRun.objects.count() >= 40, 30, "the first slots to run")
        time.sleep(8)
    finally:
        stopped = timezone.now()
        outputs = stop_runners(procs)
    logs = "".join((tmp_path / f"runner-{i}.log").read_text() for i in range(2))
    assert "database is locked" not in logs and "IntegrityError" not in logs, logs[-3000:]
    assert [p.returncode for p in procs] == [0, 0], logs[-3000:]
    shares = [int(out.split(" after ")[-1].split()[0]) for out in outputs]
    assert all(n > 0 for n in shares), outputs
    assert assert_every_slot_once(5, stopped, tolerance=5) == sum(shares)


@pytest.mark.django_db(transaction=True)
def test_three_runners_on_postgresql_run_every_slot_once_and_survive_a_sigkill(
    http_server, subprocess_env, tmp_path
):
    """Acceptance 1: 600 checks, 10 s intervals, a target that takes 1 s, three runners for
    about a minute; one is SIGKILLed while it holds a batch: its slots run again once their
    lease ends, on the other runners, never twice; no slot is missed."""
    if connection.vendor != "postgresql":
        pytest.skip("runs in the PostgreSQL test run (DATABASE_URL=postgres://…)")

    def slow(request):
        time.sleep(1)
        return reply()

    server = http_server(slow)
    Check.objects.bulk_create(
        Check(
            name=f"web-{i:03d}",
            kind="http",
            config={"url": f"{server.url}/{i}"},
            interval_seconds=10,
            timeout_seconds=3,
            warn=2500,  # healthy at 1 s: the alert engine's work is not what is measured here
        )
        for i in range(600)
    )
    # 60 runs a second of 1 s probes: two runners (after the kill) must carry them on a busy
    # machine, so each may have 100 in flight.
    procs = start_runners(subprocess_env, 3, tmp_path, concurrency=100)
    started = time.monotonic()
    try:
        wait_started(procs)
        wait_for(lambda: CheckRun.objects.count() >= 600, 30, "every check's first slot")
        victim = procs[0]
        prefix = f":{victim.pid}:"
        wait_for(
            lambda: Check.objects.filter(lease_owner__contains=prefix).exists(),
            15,
            "the first runner to hold a batch",
        )
        victim.send_signal(signal.SIGKILL)
        killed_at = timezone.now()
        held = dict(
            Check.objects.filter(lease_owner__contains=prefix).values_list("pk", "lease_slot_at")
        )
        expires = Check.objects.filter(lease_owner__contains=prefix).values_list(
            "lease_expires_at", flat=True
        )
        lease_end = max(expires) if held else killed_at
        victim.wait(timeout=10)
        time.sleep(max(0.0, 62 - (time.monotonic() - started)))
    finally:
        stopped = timezone.now()
        stop_runners([p for p in procs if p.poll() is None])
    logs = "".join((tmp_path / f"runner-{i}.log").read_text() for i in range(3))
    assert "IntegrityError" not in logs, logs[-3000:]
    assert held, "the killed runner held a batch"
    reruns = CheckRun.objects.filter(
        check_obj_id__in=list(held), slot_at__in=set(held.values())
    ).values_list("check_obj_id", "slot_at", "created_at")
    by_check = {check_id: (slot, created) for check_id, slot, created in reruns}
    for check_id, slot in held.items():
        assert check_id in by_check and by_check[check_id][0] == slot, "a held slot was lost"
        # Run again once the lease ended (a poll and a probe later), not long after.
        assert by_check[check_id][1] <= lease_end + timedelta(seconds=8)
    assert assert_every_slot_once(10, stopped, tolerance=5) >= 600 * 5
    print(json.dumps({"held": len(held), "runs": CheckRun.objects.count()}))
