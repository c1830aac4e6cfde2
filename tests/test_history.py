"""History that stays fast: rollups agree with the raw runs they summarise, uptime and the
status strip match a hand-computed fixture, retention keeps status changes and the last N."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from monitoring.history.rollups import floor_time, refresh_rollups
from monitoring.history.strip import render_strip, status_strips
from monitoring.history.uptime import Uptime, uptimes
from monitoring.models import Check, CheckRun
from monitoring.models.history import CheckRollup, RollupPeriod

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 31, 12, 2, 30, tzinfo=UTC)  # 12:02:30: inside the 12:00 5-min bucket


def make_check(name: str = "api", interval: int = 60) -> Check:
    return Check.objects.create(
        name=name, kind="http", config={"url": "http://127.0.0.1:9/"}, interval_seconds=interval
    )


def run(check: Check, at: datetime, status: str = "ok", value=None, duration=10.0, changed=False):
    return CheckRun(
        check_obj=check,
        status=status,
        value=value,
        duration_ms=duration,
        created_at=at,
        status_changed=changed,
    )


# --- rollups -----------------------------------------------------------------------------------


def series(check: Check) -> list[CheckRun]:
    """Every 30 s from 10:50 to 12:02:30, values 100..., one failure in seven, a few None."""
    start = datetime(2026, 3, 31, 10, 50, tzinfo=UTC)
    runs = []
    for i in range(146):
        status = "critical" if i % 7 == 3 else "warning" if i % 11 == 5 else "ok"
        value = None if i % 13 == 0 else 100.0 + (i * 37) % 50
        runs.append(run(check, start + timedelta(seconds=30 * i), status, value, 5.0 + i % 9))
    return runs


def expected(runs: list[CheckRun], start: datetime, length: timedelta, interval: int) -> dict:
    inside = [r for r in runs if start <= r.created_at < start + length]
    values = [r.value for r in inside if r.value is not None]
    failed = sum(r.status != "ok" for r in inside)
    rank = {"ok": 0, "warning": 2, "critical": 3}
    return {
        "run_count": len(inside),
        "failed_count": failed,
        "value_count": len(values),
        "value_sum": pytest.approx(sum(values)),
        "value_min": min(values, default=None),
        "value_max": max(values, default=None),
        "duration_sum_ms": pytest.approx(sum(r.duration_ms for r in inside)),
        "duration_max_ms": max(r.duration_ms for r in inside),
        "worst_status": max((r.status for r in inside), key=rank.__getitem__),
        "not_ok_seconds": pytest.approx(min(length.total_seconds(), failed * interval)),
    }


FIELDS = (
    "run_count",
    "failed_count",
    "value_count",
    "value_sum",
    "value_min",
    "value_max",
    "duration_sum_ms",
    "duration_max_ms",
    "worst_status",
    "not_ok_seconds",
)


def as_dict(rollup: CheckRollup) -> dict:
    return {key: getattr(rollup, key) for key in FIELDS}


def test_rollups_agree_with_the_raw_runs_they_summarise():
    check = make_check(interval=30)
    other = make_check("other")
    runs = series(check)
    CheckRun.objects.bulk_create(runs + [run(other, NOW - timedelta(minutes=1), "critical", 9.0)])
    result = refresh_rollups(now=NOW, since=datetime(2026, 3, 31, 10, 50, tzinfo=UTC))
    fives = CheckRollup.objects.filter(check_obj=check, period=RollupPeriod.FIVE_MINUTES)
    assert fives.count() == 15  # 10:50 ... 12:00
    assert result.five_minute_buckets == 16  # the other check's one bucket too
    for rollup in fives:
        assert as_dict(rollup) == expected(runs, rollup.bucket, timedelta(minutes=5), 30), rollup
    hours = {r.bucket: r for r in CheckRollup.objects.filter(check_obj=check, period=3600)}
    assert sorted(hours) == [datetime(2026, 3, 31, h, tzinfo=UTC) for h in (10, 11, 12)]
    for bucket, rollup in hours.items():
        want = expected(runs, bucket, timedelta(hours=1), 30)
        # Hourly time-not-ok is the sum of its 5-minute buckets' (each capped at 5 minutes).
        want["not_ok_seconds"] = pytest.approx(
            sum(f.not_ok_seconds for f in fives if bucket <= f.bucket < bucket + timedelta(hours=1))
        )
        assert as_dict(rollup) == want
    assert hours[datetime(2026, 3, 31, 11, tzinfo=UTC)].run_count == 120
    assert hours[datetime(2026, 3, 31, 11, tzinfo=UTC)].value_mean == pytest.approx(
        sum(r.value for r in runs if r.created_at.hour == 11 and r.value is not None)
        / sum(1 for r in runs if r.created_at.hour == 11 and r.value is not None)
    )


def test_a_run_on_a_bucket_boundary_belongs_to_the_bucket_it_starts():
    """The bucket of a run is computed by arithmetic on its epoch seconds: a run a microsecond
    before a boundary and one exactly on it land in neighbouring buckets, 5-minute and hourly."""
    check = make_check()
    boundary = datetime(2026, 3, 31, 11, 0, tzinfo=UTC)
    CheckRun.objects.bulk_create(
        [
            run(check, boundary - timedelta(microseconds=1), "critical", 1.0),
            run(check, boundary, "ok", 2.0),
            run(check, boundary + timedelta(minutes=5) - timedelta(microseconds=1), "ok", 3.0),
            run(check, boundary + timedelta(minutes=5), "warning", 4.0),
        ]
    )
    refresh_rollups(now=NOW, since=datetime(2026, 3, 31, 10, 50, tzinfo=UTC))
    fives = {
        r.bucket.strftime("%H:%M"): (r.run_count, r.value_sum, r.worst_status)
        for r in CheckRollup.objects.filter(check_obj=check, period=RollupPeriod.FIVE_MINUTES)
    }
    assert fives == {
        "10:55": (1, 1.0, "critical"),
        "11:00": (2, 5.0, "ok"),
        "11:05": (1, 4.0, "warning"),
    }
    hours = {
        r.bucket.strftime("%H:%M"): (r.run_count, r.worst_status)
        for r in CheckRollup.objects.filter(check_obj=check, period=RollupPeriod.HOUR)
    }
    assert hours == {"10:00": (1, "critical"), "11:00": (3, "warning")}


def test_the_minute_pass_is_idempotent_and_counts_runs_committed_late():
    check = make_check()
    CheckRun.objects.bulk_create(
        [run(check, NOW - timedelta(seconds=s), "ok", 10.0) for s in (20, 80, 200)]
    )
    with time_machine.travel(NOW, tick=False):
        refresh_rollups()
        refresh_rollups()  # a second pass (or a second worker) changes nothing
    five = CheckRollup.objects.get(
        check_obj=check, period=300, bucket=floor_time(NOW, timedelta(minutes=5))
    )
    previous = CheckRollup.objects.get(
        check_obj=check, period=300, bucket=five.bucket - timedelta(minutes=5)
    )
    assert (five.run_count, previous.run_count) == (2, 1)
    assert CheckRollup.objects.filter(check_obj=check).count() == 4  # 5-min and hourly buckets
    # A run of the 11:55 bucket committed after the 12:02 pass is counted by the next one.
    CheckRun.objects.create(
        **{
            "check_obj": check,
            "status": "critical",
            "value": 99.0,
            "created_at": NOW - timedelta(minutes=6),
        }
    )
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        refresh_rollups()
    previous.refresh_from_db()
    hour = CheckRollup.objects.get(
        check_obj=check, period=3600, bucket=NOW.replace(hour=11, minute=0, second=0)
    )
    assert (previous.run_count, previous.failed_count, previous.worst_status) == (2, 1, "critical")
    assert (hour.run_count, hour.failed_count, hour.value_max) == (2, 1, 99.0)
    assert CheckRollup.objects.filter(check_obj=check).count() == 4


# --- uptime and strip: a hand-computed fixture -------------------------------------------------

T = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


@pytest.fixture
def timeline():
    """Status changes at known times. ``steady``: ok for 40 days, critical for 6 h ten days
    ago and for 3 h from 12 h ago; ``young``: first status 2 days ago, critical for the last
    hour; ``silent``: no status change ever."""
    steady, young, silent = make_check("steady"), make_check("young"), make_check("silent")
    CheckRun.objects.bulk_create(
        [
            run(steady, T - timedelta(days=40), "ok", changed=True),
            run(steady, T - timedelta(days=10), "critical", changed=True),
            run(steady, T - timedelta(days=10) + timedelta(hours=6), "ok", changed=True),
            run(steady, T - timedelta(hours=12), "critical", changed=True),
            # a failing run that did not change the status (debounce): not downtime
            run(steady, T - timedelta(hours=5), "critical"),
            run(steady, T - timedelta(hours=9), "warning", changed=True),
            run(steady, T - timedelta(hours=8, minutes=30), "ok", changed=True),
            run(young, T - timedelta(days=2), "ok", changed=True),
            run(young, T - timedelta(hours=1), "critical", changed=True),
            run(silent, T - timedelta(hours=3), "unknown"),
        ]
    )
    return steady, young, silent


def test_uptime_is_the_share_of_time_not_critical_from_status_changes(timeline):
    steady, young, silent = timeline
    with time_machine.travel(T, tick=False):
        found = uptimes([steady.pk, young.pk, silent.pk])
    assert found[steady.pk] == Uptime(
        d1=pytest.approx(100 * 21 / 24),
        d7=pytest.approx(100 * (168 - 3) / 168),
        d30=pytest.approx(100 * (720 - 9) / 720),
    )
    # Known for two days only: the time before its first status is no data, not downtime.
    assert found[young.pk] == Uptime(
        d1=pytest.approx(100 * 23 / 24),
        d7=pytest.approx(100 * 47 / 48),
        d30=pytest.approx(100 * 47 / 48),
    )
    assert found[silent.pk] == Uptime(None, None, None)
    # Exact, not 87.4999997: the database's time arithmetic leaves no float noise.
    assert found[steady.pk].d1 == 87.5
    # An hour later the 24 h window has moved: 4 h down of 24 (the last hour still critical
    # for young; steady's 3 h stay inside).
    with time_machine.travel(T + timedelta(hours=1), tick=False):
        later = uptimes([steady.pk, young.pk])
    assert later[steady.pk].d1 == pytest.approx(100 * 21 / 24)
    assert later[young.pk].d1 == pytest.approx(100 * 22 / 24)


def test_uptime_summed_by_the_database_matches_the_timeline_walked_in_python(timeline):
    from monitoring.history import uptime

    ids = [c.pk for c in timeline]
    for now in (T, T - timedelta(hours=10), T - timedelta(days=9, hours=20), T + timedelta(days=3)):
        changes = uptime._changes_in_python(ids, now - timedelta(days=30), now)
        before = {c.pk: None for c in timeline}
        for check_id in ids:
            older = (
                CheckRun.objects.filter(
                    check_obj_id=check_id,
                    status_changed=True,
                    created_at__lte=now - timedelta(days=30),
                )
                .order_by("-created_at")
                .first()
            )
            before[check_id] = older.status if older else None
        walked = {
            check_id: Uptime(
                **{
                    key: uptime._share_up(
                        before[check_id], changes.get(check_id, []), now - span, now
                    )
                    for key, span in uptime.WINDOWS.items()
                }
            )
            for check_id in ids
        }
        summed = uptimes(ids, now=now)
        for check_id in ids:
            for key in ("d1", "d7", "d30"):
                a, b = getattr(summed[check_id], key), getattr(walked[check_id], key)
                assert (a is None) == (b is None) and (
                    a is None or a == pytest.approx(b, abs=1e-6)
                ), (now, check_id, key)


def test_uptime_takes_two_queries_for_any_number_of_checks(timeline, django_assert_max_num_queries):
    extra = [make_check(f"more-{i}") for i in range(20)]
    with django_assert_max_num_queries(2):
        found = uptimes([c.pk for c in (*timeline, *extra)], now=T)
    assert len(found) == 23


def test_api_lists_uptime_per_check(client, api_key_factory, timeline):
    steady, young, silent = timeline
    key = api_key_factory("read")
    with time_machine.travel(T, tick=False):
        response = client.get("/api/checks/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["checks"]}
    assert rows["steady"]["uptime_24h"] == 87.5  # exactly: no float noise from the database
    assert rows["steady"]["uptime_30d"] == pytest.approx(100 * 711 / 720, abs=0.001)
    assert rows["young"]["uptime_7d"] == pytest.approx(100 * 47 / 48, abs=0.001)
    assert (rows["silent"]["uptime_24h"], rows["silent"]["uptime_7d"]) == (None, None)


def test_status_strip_shows_the_last_24_hours_by_worst_status():
    steady, empty = make_check("strip"), make_check("empty")
    now = T + timedelta(minutes=30)  # 12:30: the last cell is the current hour
    CheckRun.objects.bulk_create(
        [
            run(steady, T - timedelta(hours=h, minutes=-m), "ok", 50.0)
            for h in range(1, 24)
            for m in (10, 40)
        ]
        + [run(steady, T - timedelta(hours=12, minutes=-20), "critical", 60.0)]
        + [run(steady, T + timedelta(minutes=m), "warning", 70.0) for m in (1, 2, 3)]
    )
    with time_machine.travel(now, tick=False):
        refresh_rollups(since=T - timedelta(hours=24))
        strips = status_strips([steady, empty.pk])
    cells = strips[steady.pk]
    assert len(cells) == 24
    assert cells[0].start == T - timedelta(hours=23) and cells[-1].end == T + timedelta(hours=1)
    by_hour = {c.start.hour: c for c in cells}
    assert (by_hour[0].status, by_hour[0].runs, by_hour[0].failed) == ("critical", 3, 1)
    assert by_hour[0].label == "00:00–01:00 UTC: critical, 1 of 3 runs failed"
    assert by_hour[12].label == "12:00–13:00 UTC: warning, 3 of 3 runs failed"
    assert by_hour[11].label == "11:00–12:00 UTC: ok, 2 runs, none failed"
    assert all(c.status == "" and c.label.endswith("no runs") for c in strips[empty.pk])
    svg = str(render_strip(cells))
    assert svg.count("<rect") == 24 and svg.count("<title>") == 25
    assert "style=" not in svg and "<script" not in svg
    assert 'role="img"' in svg and "22 hours ok" in svg and "1 hour critical" in svg
    assert 'class="strip-cell strip-critical"' in svg


# --- retention ---------------------------------------------------------------------------------


def test_retention_keeps_status_changes_the_last_n_and_recent_runs(settings):
    from opsconsole.housekeeping import run_housekeeping

    settings.CHECKRUN_RETENTION_DAYS = 2
    settings.CHECKRUN_KEEP_LAST = 5
    now = timezone.now()
    busy, rare, stopped = make_check("busy"), make_check("rare"), make_check("stopped")
    # busy: every 30 min for 4 days (newest 5 are recent); rare: daily for 10 days;
    # stopped: 3 runs a month ago (fewer than N: all stay)
    CheckRun.objects.bulk_create(
        [run(busy, now - timedelta(minutes=30 * i), changed=(i == 150)) for i in range(192)]
        + [run(rare, now - timedelta(days=i, minutes=1), changed=(i == 9)) for i in range(10)]
        + [run(stopped, now - timedelta(days=30, minutes=i)) for i in range(3)]
    )
    old_rollup = CheckRollup.objects.create(
        check_obj=busy, period=300, bucket=now - timedelta(days=36)
    )
    kept_rollup = CheckRollup.objects.create(
        check_obj=busy, period=3600, bucket=now - timedelta(days=36)
    )
    cutoff = now - timedelta(days=2)
    outcome = run_housekeeping(now=now)
    busy_left = list(
        CheckRun.objects.filter(check_obj=busy).values_list("created_at", "status_changed")
    )
    # two days of half-hours (the one exactly at the cutoff stays) and the old status change
    assert len(busy_left) == 97 + 1
    assert all(at >= cutoff or changed for at, changed in busy_left)
    # rare: the last 5 (days 0-4) are kept, and the day-9 status change
    rare_days = sorted(
        round((now - at).total_seconds() / 86400)
        for at in CheckRun.objects.filter(check_obj=rare).values_list("created_at", flat=True)
    )
    assert rare_days == [0, 1, 2, 3, 4, 9]
    assert CheckRun.objects.filter(check_obj=stopped).count() == 3
    assert not CheckRollup.objects.filter(pk=old_rollup.pk).exists()
    assert CheckRollup.objects.filter(pk=kept_rollup.pk).exists()
    removed = {r.name: r.removed for r in outcome.results}
    assert removed["check runs"] == (192 - 98) + (10 - 6)
    assert removed["check rollups (5 min)"] == 1


def test_rollups_command_recomputes_the_recent_buckets_and_refuses_a_bad_duration():
    from io import StringIO

    from django.core.management import CommandError, call_command

    check = make_check()
    CheckRun.objects.create(check_obj=check, status="warning", created_at=timezone.now())
    out = StringIO()
    call_command("rollups", "--since", "1h", stdout=out)
    assert "5-minute" in out.getvalue()
    assert CheckRollup.objects.filter(check_obj=check, period=300, worst_status="warning").exists()
    with pytest.raises(CommandError, match="--since"):
        call_command("rollups", "--since", "soon")


def test_rollups_are_scheduled_every_minute():
    from django.utils.module_loading import import_string

    from opsconsole.registries import periodic_jobs

    jobs = {job.name: job for job in periodic_jobs()}
    assert (jobs["rollups"].minutes, jobs["rollups"].command) == (1, "rollups")
    assert callable(import_string(jobs["rollups"].func))


def expected_rollups(runs: list[CheckRun], intervals: dict[int, int]) -> dict[tuple, dict]:
    """What the 5-minute and hourly rollups of ``runs`` must hold, keyed by (check id,
    period, bucket): computed in Python from the runs themselves."""
    rank = {"ok": 0, "warning": 2, "critical": 3}
    groups: dict[tuple, list[CheckRun]] = {}
    for r in runs:
        groups.setdefault(
            (r.check_obj_id, floor_time(r.created_at, timedelta(minutes=5))), []
        ).append(r)
    out: dict[tuple, dict] = {}
    for (check_id, bucket), inside in groups.items():
        values = [r.value for r in inside if r.value is not None]
        failed = sum(r.status != "ok" for r in inside)
        out[(check_id, 300, bucket)] = {
            "run_count": len(inside),
            "failed_count": failed,
            "value_count": len(values),
            "value_sum": sum(values),
            "value_min": min(values, default=None),
            "value_max": max(values, default=None),
            "duration_sum_ms": sum(r.duration_ms for r in inside),
            "duration_max_ms": max(r.duration_ms for r in inside),
            "worst_status": max((r.status for r in inside), key=rank.__getitem__),
            "not_ok_seconds": float(min(300, failed * intervals[check_id])),
        }
    for (check_id, _, bucket), five in list(out.items()):
        hour = out.setdefault(
            (check_id, 3600, floor_time(bucket, timedelta(hours=1))),
            {key: 0 for key in FIELDS}
            | {"value_min": None, "value_max": None, "worst_status": "ok"},
        )
        for key in (
            "run_count",
            "failed_count",
            "value_count",
            "value_sum",
            "duration_sum_ms",
            "not_ok_seconds",
        ):
            hour[key] += five[key]
        for key, pick in (("value_min", min), ("value_max", max), ("duration_max_ms", max)):
            both = [v for v in (hour[key], five[key]) if v is not None]
            hour[key] = pick(both) if both else None
        hour["worst_status"] = max(
            (hour["worst_status"], five["worst_status"]), key=rank.__getitem__
        )
    return out


def stored_rollups() -> dict[tuple, dict]:
    return {(r.check_obj_id, r.period, r.bucket): as_dict(r) for r in CheckRollup.objects.all()}


def assert_rollups_agree(stored: dict[tuple, dict], want: dict[tuple, dict]) -> None:
    assert sorted(stored) == sorted(want)
    for key, row in want.items():
        got = stored[key]
        for field in FIELDS:
            if isinstance(row[field], float):
                assert got[field] == pytest.approx(row[field]), (key, field)
            else:
                assert got[field] == row[field], (key, field)


def test_housekeeping_rolls_up_raw_runs_before_deleting_them(settings):
    """10 days of raw runs and no rollup (an upgrade, or a rollups job stopped for days): one
    housekeeping pass keeps 2 days of raw runs and leaves every bucket of the 10 days
    summarised from all its runs; a second pass (which meets the kept runs of a stopped
    check again) and a later rollups job change nothing."""
    from opsconsole.housekeeping import run_housekeeping

    settings.CHECKRUN_RETENTION_DAYS = 2
    settings.CHECKRUN_KEEP_LAST = 100
    now = datetime(2026, 3, 31, 12, 2, 40, tzinfo=UTC)
    start = now - timedelta(days=10)
    busy = make_check("busy", interval=150)
    stopped = make_check("stopped", interval=60)
    runs = []
    for i in range(int(timedelta(days=10) / timedelta(seconds=150))):
        status = "critical" if i % 17 == 3 else "warning" if i % 29 == 5 else "ok"
        value = None if i % 13 == 0 else 100.0 + (i * 37) % 50
        at = start + timedelta(seconds=150 * i + 7)
        runs.append(run(busy, at, status, value, 5.0 + i % 9, changed=i % 17 in (3, 4)))
    # ran every minute for a day, stopped 9 days ago: its last 100 runs stay, sharing their
    # buckets with busy's status changes
    for i in range(1440):
        status = "warning" if i % 50 == 7 else "ok"
        runs.append(run(stopped, start + timedelta(seconds=60 * i + 31), status, float(i % 40)))
    CheckRun.objects.bulk_create(runs)
    want = expected_rollups(runs, {busy.pk: 150, stopped.pk: 60})

    with time_machine.travel(now, tick=False):
        outcome = run_housekeeping()
    removed = next(r.removed for r in outcome.results if r.name == "check runs")
    cutoff = floor_time(now - timedelta(days=2), timedelta(minutes=5))
    assert removed > 5000  # most of 8 days went
    assert not CheckRun.objects.filter(
        check_obj=busy, created_at__lt=cutoff, status_changed=False
    ).exists()
    assert CheckRun.objects.filter(check_obj=stopped).count() == 100
    assert_rollups_agree(stored_rollups(), want)

    after_first = stored_rollups()
    with time_machine.travel(now + timedelta(hours=1), tick=False):
        run_housekeeping()
    with time_machine.travel(now + timedelta(hours=1, minutes=1), tick=False):
        # even asked to go back 10 days: the thinned buckets keep their full summary
        refresh_rollups(since=now - timedelta(days=10))
    assert stored_rollups() == after_first


def test_a_rollup_is_never_replaced_by_a_recomputation_that_counts_fewer_runs():
    from monitoring.history.rollups import recompute_rollups

    check = make_check(interval=60)
    bucket = floor_time(NOW, timedelta(minutes=5)) - timedelta(hours=1)
    CheckRun.objects.bulk_create(
        [
            run(check, bucket + timedelta(seconds=60 * i), "critical" if i == 2 else "ok", float(i))
            for i in range(5)
        ]
    )
    recompute_rollups(bucket, bucket + timedelta(minutes=5))
    full = as_dict(CheckRollup.objects.get(check_obj=check, period=300, bucket=bucket))
    assert (full["run_count"], full["worst_status"]) == (5, "critical")
    # housekeeping thinned the bucket to its status change: recomputing it reads one run
    CheckRun.objects.filter(check_obj=check).exclude(value=2.0).delete()
    recompute_rollups(bucket, bucket + timedelta(minutes=5))
    assert as_dict(CheckRollup.objects.get(check_obj=check, period=300, bucket=bucket)) == full
    # a run committed late makes the bucket larger: that recomputation is taken
    CheckRun.objects.bulk_create(
        [run(check, bucket + timedelta(seconds=60 * i + 1), "ok", 50.0) for i in range(5)]
    )
    recompute_rollups(bucket, bucket + timedelta(minutes=5))
    grown = CheckRollup.objects.get(check_obj=check, period=300, bucket=bucket)
    assert (grown.run_count, grown.value_max) == (6, 50.0)


def test_housekeeping_checks_the_window_is_summarised_and_recomputes_only_what_is_not(settings):
    """In steady state the every-minute job has summarised a day before housekeeping reaches
    it: the database confirms every run is counted and nothing is recomputed. A run committed
    after the job's last pass over its bucket, or an hourly rollup left behind (a job stopped
    between its two passes), makes the window unsummarised, and housekeeping then recomputes
    it before deleting, so that nothing is lost."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from monitoring.history.rollups import window_summarised
    from opsconsole.housekeeping import run_housekeeping

    settings.CHECKRUN_RETENTION_DAYS = 2
    settings.CHECKRUN_KEEP_LAST = 0
    now = datetime(2026, 3, 31, 12, 2, 40, tzinfo=UTC)
    first = datetime(2026, 3, 28, 10, 0, tzinfo=UTC)  # a 2-hour window, past the retention
    until = first + timedelta(hours=2)
    check = make_check(interval=60)
    runs = [run(check, first + timedelta(seconds=60 * i + 5), "ok", float(i)) for i in range(120)]
    CheckRun.objects.bulk_create(runs)
    assert not window_summarised(first, until)  # no rollup yet
    with time_machine.travel(until + timedelta(seconds=30), tick=False):
        refresh_rollups(since=first)
    assert window_summarised(first, until)

    # a run committed late: its bucket's rollup counts one run fewer than the table holds
    late = run(check, first + timedelta(minutes=30, seconds=1), "critical", 999.0)
    CheckRun.objects.bulk_create([late])
    assert not window_summarised(first, until)
    # an hourly rollup left behind its 5-minute buckets
    with time_machine.travel(until + timedelta(minutes=1), tick=False):
        refresh_rollups(since=first)
    assert window_summarised(first, until)
    CheckRollup.objects.filter(period=RollupPeriod.HOUR, bucket=first).update(run_count=3)
    assert not window_summarised(first, until)
    with time_machine.travel(until + timedelta(minutes=2), tick=False):
        refresh_rollups(since=first)

    # steady state: housekeeping deletes without a recomputation (no rollup upsert)
    with time_machine.travel(now, tick=False), CaptureQueriesContext(connection) as ctx:
        run_housekeeping()
    upserts = [
        q for q in ctx.captured_queries if 'INSERT INTO "monitoring_checkrollup"' in q["sql"]
    ]
    assert upserts == []
    assert not CheckRun.objects.filter(check_obj=check, created_at__lt=until).exists()
    assert_rollups_agree(stored_rollups(), expected_rollups([*runs, late], {check.pk: 60}))


def test_housekeeping_recomputes_a_window_with_a_run_the_job_never_counted(settings):
    from opsconsole.housekeeping import run_housekeeping

    settings.CHECKRUN_RETENTION_DAYS = 2
    settings.CHECKRUN_KEEP_LAST = 0
    now = datetime(2026, 3, 31, 12, 2, 40, tzinfo=UTC)
    first = datetime(2026, 3, 28, 10, 0, tzinfo=UTC)
    check = make_check(interval=60)
    runs = [run(check, first + timedelta(seconds=60 * i + 5), "ok", float(i)) for i in range(60)]
    CheckRun.objects.bulk_create(runs)
    with time_machine.travel(first + timedelta(hours=1, seconds=30), tick=False):
        refresh_rollups(since=first)
    late = run(check, first + timedelta(minutes=12), "critical", 999.0)
    CheckRun.objects.bulk_create([late])
    with time_machine.travel(now, tick=False):
        run_housekeeping()
    assert not CheckRun.objects.filter(check_obj=check, status_changed=False).exists()
    assert_rollups_agree(stored_rollups(), expected_rollups([*runs, late], {check.pk: 60}))
