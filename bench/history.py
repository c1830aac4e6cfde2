"""Benchmark of history at scale on PostgreSQL: 30 days of it for 500 checks, and one
housekeeping pass over a day of raw runs at 10,000 one-minute checks (14.4 M runs).

    .venv/bin/python bench/history.py [--checks 500] [--day-runs 14400000]

Creates a scratch database on BENCH_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres), drops it at the end. The history is what the
console keeps at steady state: 5-minute rollups for 30 days (4.3 M rows), hourly rollups
for 30 days, 2 days of raw runs at one a minute (1.44 M rows) and the status changes of the
30 days. Targets:

- the check page with its 30-day chart ≤ 250 ms; the dashboard ≤ 200 ms;
- ``GET /api/checks/`` (uptime of every check) ≤ 300 ms;
- the every-minute rollup pass well under its minute;
- one housekeeping pass over a day of raw runs past retention (``--day-runs``, default
  14.4 M, spread over 10,000 checks): its time (within its daily schedule, and the
  extrapolation to 14.4 M when run with fewer) and its longest transaction (≤ 1 s). By
  default the day has been summarised by the rollups job, as in steady state (the pass
  confirms it and deletes); ``--unsummarised`` measures the catch-up after a stopped
  worker, where every window is rolled up before it is deleted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import drop_database, measure, measure_call, scratch_database  # noqa: E402

TARGETS = {
    "check page, 30-day chart": 250.0,
    "dashboard": 200.0,
    "api checks with uptime": 300.0,
}


def timed(label: str, sql: str, params: list) -> None:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    print(f"  {label} in {time.perf_counter() - started:.1f} s")


def load_history(checks: int) -> int:
    """500 checks with 30 days of rollups, 2 days of raw runs and status changes."""
    from django.db import connection
    from django.utils import timezone

    from monitoring.history.rollups import FIVE_MINUTES, floor_time
    from monitoring.models import Check, CheckRun
    from monitoring.models.history import CheckRollup

    statuses = ["ok"] * 16 + ["warning", "critical", "unknown", "ok"]
    Check.objects.bulk_create(
        Check(
            name=f"check-{i:04d}",
            kind="http",
            component=f"component-{i % 25}",
            config={"url": f"http://127.0.0.1:9/{i}"},
            warn=800,
            crit=3000,
            status=statuses[i % len(statuses)],
            last_value=100 + i % 900,
            last_message="HTTP 200",
            last_run_at=timezone.now(),
        )
        for i in range(checks)
    )
    ids = list(Check.objects.order_by("id").values_list("id", flat=True))
    first = ids[0]
    now = timezone.now()
    bucket0 = floor_time(now, FIVE_MINUTES)
    rollups = CheckRollup._meta.db_table
    runs = CheckRun._meta.db_table
    # 30 days of 5-minute buckets per check (5 runs each, one failure in 50 buckets).
    timed(
        f"{checks * 8640:,} 5-minute rollups",
        f"""INSERT INTO {rollups} (check_id, period, bucket, run_count, failed_count,
                value_count, value_sum, value_min, value_max, duration_sum_ms, duration_max_ms,
                worst_status, not_ok_seconds)
            SELECT %s + c, 300, %s - make_interval(mins => 5 * b), 5,
                   CASE WHEN (b + c) %% 50 = 0 THEN 1 ELSE 0 END, 5,
                   5 * (150 + (b + c) %% 20), 140 + (b + c) %% 20, 160 + (b + c) %% 20,
                   500, 120, CASE WHEN (b + c) %% 50 = 0 THEN 'critical' ELSE 'ok' END,
                   CASE WHEN (b + c) %% 50 = 0 THEN 60 ELSE 0 END
            FROM generate_series(0, %s - 1) AS c, generate_series(0, 8639) AS b""",
        [first, bucket0, checks],
    )
    timed(
        "hourly rollups from them (SQL)",
        f"""INSERT INTO {rollups} (check_id, period, bucket, run_count, failed_count,
                value_count, value_sum, value_min, value_max, duration_sum_ms, duration_max_ms,
                worst_status, not_ok_seconds)
            SELECT check_id, 3600, date_trunc('hour', bucket), sum(run_count), sum(failed_count),
                   sum(value_count), sum(value_sum), min(value_min), max(value_max),
                   sum(duration_sum_ms), max(duration_max_ms),
                   CASE WHEN sum(failed_count) > 0 THEN 'critical' ELSE 'ok' END,
                   sum(not_ok_seconds)
            FROM {rollups} WHERE period = 300 GROUP BY check_id, date_trunc('hour', bucket)""",
        [],
    )
    # 2 days of raw runs at one a minute; a status change every 12 hours per check over
    # 30 days (critical for 10 minutes), the newest ones among the raw runs.
    timed(
        f"{checks * 2880:,} raw runs (2 days)",
        f"""INSERT INTO {runs} (check_id, status, value, message, details, duration_ms,
                created_at, status_changed)
            SELECT %s + c, 'ok', 150 + (m + c) %% 20, 'HTTP 200', '{{}}', 120,
                   %s - make_interval(mins => m), false
            FROM generate_series(0, %s - 1) AS c, generate_series(0, 2879) AS m""",
        [first, now, checks],
    )
    timed(
        f"{checks * 120:,} status changes (30 days)",
        f"""INSERT INTO {runs} (check_id, status, value, message, details, duration_ms,
                created_at, status_changed)
            SELECT %s + c, s.status, 150, 'change', '{{}}', 120,
                   %s - make_interval(hours => 12 * h, mins => s.offs + c %% 60), true
            FROM generate_series(0, %s - 1) AS c, generate_series(0, 59) AS h,
                 (VALUES ('critical', 10), ('ok', 0)) AS s(status, offs)""",
        [first, now, checks],
    )
    with connection.cursor() as cursor:
        # What autovacuum does to a live table: statistics and the visibility map.
        cursor.execute("VACUUM ANALYZE")
    return ids[-1]


def load_day_past_retention(day_runs: int, checks: int = 10_000) -> int:
    """A day of raw runs, all past the raw-run retention, spread over ``checks`` checks."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from monitoring.models import Check, CheckRun

    existing = Check.objects.count()
    Check.objects.bulk_create(
        Check(name=f"busy-{i:05d}", kind="http", config={"url": "http://127.0.0.1:9/"})
        for i in range(max(0, checks - existing))
    )
    ids = list(Check.objects.order_by("id").values_list("id", flat=True))
    start = timezone.now() - timedelta(days=settings.CHECKRUN_RETENTION_DAYS + 1)
    step = 86400 / max(day_runs / len(ids), 1)  # seconds between two runs of one check
    timed(
        f"{day_runs:,} raw runs of one day past retention over {len(ids):,} checks",
        f"""INSERT INTO {CheckRun._meta.db_table} (check_id, status, value, message, details,
                duration_ms, created_at, status_changed)
            SELECT (%s::bigint[])[1 + g %% %s], 'ok', 150, 'HTTP 200', '{{}}', 120,
                   %s + make_interval(secs => (g / %s) * %s), false
            FROM generate_series(0, %s - 1) AS g""",
        [ids, len(ids), start, len(ids), step, day_runs],
    )
    # Each check's latest runs, as in steady state: the last-N boundary of every check is
    # recent, so all of the day is past it.
    keep = settings.CHECKRUN_KEEP_LAST
    timed(
        f"{keep * len(ids):,} recent runs ({keep} per check)",
        f"""INSERT INTO {CheckRun._meta.db_table} (check_id, status, value, message, details,
                duration_ms, created_at, status_changed)
            SELECT c, 'ok', 150, 'HTTP 200', '{{}}', 120, now() - make_interval(mins => m), false
            FROM unnest(%s::bigint[]) AS c, generate_series(0, %s - 1) AS m""",
        [ids, keep],
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return len(ids)


def summarise_day(day_runs: int) -> None:
    """What the every-minute rollups job did while the day's runs came in (untimed here)."""
    from django.conf import settings
    from django.utils import timezone

    from monitoring.history.rollups import FIVE_MINUTES, floor_time, recompute_rollups

    first = floor_time(
        timezone.now() - timedelta(days=settings.CHECKRUN_RETENTION_DAYS + 1), FIVE_MINUTES
    )
    started = time.perf_counter()
    result = recompute_rollups(first, first + timedelta(days=1, minutes=5))
    print(
        f"  the day summarised as the rollups job would have ({result.five_minute_buckets:,}"
        f" 5-minute buckets) in {time.perf_counter() - started:.1f} s (not part of the pass)"
    )


def housekeeping(day_runs: int, summarised: bool) -> int:
    """One housekeeping pass over a day of raw runs past retention; 1 if it missed."""
    from opsconsole.housekeeping import run_housekeeping

    state = "summarised by the rollups job" if summarised else "never summarised (catch-up)"
    print(f"\nHousekeeping over a day of raw runs ({day_runs:,}), {state} ...")
    load_day_past_retention(day_runs)
    if summarised:
        summarise_day(day_runs)
    started = time.perf_counter()
    outcome = run_housekeeping()
    elapsed = time.perf_counter() - started
    runs = next(r for r in outcome.results if r.name == "check runs")
    per_run = elapsed / max(runs.removed, 1)
    print(
        f"  removed {runs.removed:,} runs in {elapsed:.1f} s "
        f"({runs.transactions} transactions, longest {runs.longest_seconds * 1000:.0f} ms)"
    )
    print(
        f"  {per_run * 1e6:.1f} µs per run: a day of 14.4 M runs would take about "
        f"{per_run * 14_400_000 / 60:.1f} min of a 1,440-minute day"
    )
    return 1 if runs.longest_seconds > 1.0 or runs.removed < day_runs * 0.99 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument(
        "--day-runs",
        type=int,
        default=14_400_000,
        help="raw runs in the day that housekeeping deletes (scale down, then extrapolate)",
    )
    parser.add_argument(
        "--housekeeping-only", action="store_true", help="skip the 30-day history and the pages"
    )
    parser.add_argument(
        "--unsummarised",
        action="store_true",
        help="housekeeping over a day the rollups job never saw (a stopped worker, an upgrade):"
        " every window is recomputed before it is deleted",
    )
    args = parser.parse_args()

    base = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name, url = scratch_database(base)
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="opsconsole.settings",
        LOG_LEVEL="warning",
        ALLOWED_HOSTS="testserver,localhost",
    )
    os.environ.pop("REDIS_URL", None)
    failed = False
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        from monitoring.history.rollups import refresh_rollups
        from monitoring.models import Check
        from monitoring.web.chart import check_chart
        from opsconsole.models import ApiKey

        call_command("migrate", verbosity=0)
        if args.housekeeping_only:
            return housekeeping(args.day_runs, not args.unsummarised)
        print(f"History of {args.checks} checks into {name} ...")
        check_id = load_history(args.checks)
        user = get_user_model().objects.create_user(
            "bench", password="x" * 12, is_staff=True, is_superuser=True
        )
        client = Client()
        client.force_login(user)
        _, key = ApiKey.create("bench", "read")
        results = {
            "check page, 30-day chart": measure(client, f"/checks/{check_id}/?range=30d"),
            "dashboard": measure(client, "/"),
            "api checks with uptime": measure(
                client, "/api/checks/", HTTP_AUTHORIZATION=f"Bearer {key}"
            ),
        }
        print(f"\n{'page':40} {'median ms':>10} {'target':>8} {'queries':>8}")
        for label, (ms, queries) in results.items():
            ok = ms <= TARGETS[label]
            failed |= not ok
            print(
                f"{label:40} {ms:10.1f} {TARGETS[label]:8.0f} {queries:8d}"
                f"  {'OK' if ok else 'MISSED'}"
            )
        check = Check.objects.get(pk=check_id)
        ms, queries = measure_call(lambda: str(check_chart(check, "30d")))
        print(f"{'check_chart(check, 30d) alone':40} {ms:10.1f} {'':8} {queries:8d}")
        ms, queries = measure_call(refresh_rollups, repeat=5)
        print(f"{'every-minute rollup pass':40} {ms:10.1f} {60000:8.0f} {queries:8d}")

        failed |= housekeeping(args.day_runs, not args.unsummarised) != 0
        return 1 if failed else 0
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(base, name)


if __name__ == "__main__":
    sys.exit(main())
