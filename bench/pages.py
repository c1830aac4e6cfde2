"""Benchmark of the staff pages on PostgreSQL with production-sized tables.

    .venv/bin/python bench/pages.py [--runs 1000000] [--checks 500] [--alerts 1000] [--items 100000]
    .venv/bin/python bench/pages.py --keep              # leaves the loaded database for reruns
    .venv/bin/python bench/pages.py --reuse NAME        # measures a kept database, no loading
    .venv/bin/python bench/pages.py --reuse NAME --profile "checks list"   # cProfile a page

Creates a scratch database on BENCH_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres), loads 500 checks, 1,000,000 check runs,
1,000 alerts and 100,000 batch items, builds the rollups from the runs with the real
refresh (timed), measures server time in-process (Django test client, median of 7 requests
after a warm-up) and drops the database (unless --keep; --reuse measures a kept one again,
--profile prints where one page's time goes). Targets:

- dashboard ≤ 200 ms and ≤ 20 queries, the same count over one check and over the full database;
- checks list ≤ 200 ms;
- CheckRun admin changelist, page 1 and page 1 filtered by status, ≤ 300 ms each;
- a check page with its chart ≤ 150 ms, and with the 30-day chart (``?range=30d``) ≤ 250 ms;
- ``GET /api/checks/`` with uptime over 24 h / 7 d / 30 d ≤ 300 ms.

It also times the pieces in monitoring.history that the pages call (uptime of every check,
status strips of every check, the 30-day chart), so a slow page can be told from a slow
history read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {
    "dashboard": 200.0,
    "dashboard, every strip drawn anew": 200.0,
    "checks list": 200.0,
    "checkrun admin page 1": 300.0,
    "checkrun admin filtered by status": 300.0,
    "check page with chart": 150.0,
    "check page, 30-day chart": 250.0,
    "api checks with uptime": 300.0,
}
QUERY_TARGETS = {"dashboard": 20, "dashboard, every strip drawn anew": 20}
# Bodies whose size is printed: the dashboard fragment is fetched every 15 s by every open
# dashboard, so its bytes count as much as its milliseconds.
SIZED = {"dashboard fragment": "/dashboard/fragment/", "checks list": "/checks/"}


def scratch_database(base_url: str) -> tuple[str, str]:
    import psycopg

    name = f"opsconsole_bench_pages_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parsed = urlparse(base_url)
    return name, urlunparse(parsed._replace(path=f"/{name}"))


def drop_database(base_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(
    client, url: str, repeat: int = 7, before: Callable[[], None] | None = None, **headers: str
) -> tuple[float, int]:
    """(median ms, queries of the last request); ``before`` runs ahead of each request,
    untimed (to empty a cache)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url, **headers)  # warm-up: templates, caches, plans
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(repeat):
        if before:
            before()
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(url, **headers)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    return statistics.median(times), len(ctx.captured_queries)


def measure_call(func, repeat: int = 7) -> tuple[float, int]:
    """(median ms, queries of the last call) of an in-process function."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    func()
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            func()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(ctx.captured_queries)


def slowest_queries(client, url: str, count: int = 3, **headers: str) -> list[tuple[float, str]]:
    """The slowest SQL statements of one request, to name the query when a page misses."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get(url, **headers)
    ranked = sorted(ctx.captured_queries, key=lambda q: -float(q["time"]))
    return [(float(q["time"]) * 1000, q["sql"][:300]) for q in ranked[:count]]


def profile(client, url: str, before: Callable[[], None] | None = None, **headers: str) -> None:
    """cProfile of one request after a warm-up, the 30 costliest functions by own time and by
    cumulative time."""
    import cProfile
    import pstats

    client.get(url, **headers)
    if before:
        before()
    profiler = cProfile.Profile()
    profiler.enable()
    response = client.get(url, **headers)
    profiler.disable()
    print(f"{url}: {response.status_code}, {len(response.content):,} bytes")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


def queries_with_one_check(client) -> int:
    """The dashboard's query count over one check with one run (then removed): with no check
    at all the history reads are skipped, so the fair comparison is the smallest database
    that draws a row."""
    from django.utils import timezone

    from monitoring.models import Check, CheckRun

    check = Check.objects.create(
        name="bench-seed", kind="http", config={"url": "http://127.0.0.1:9/"}
    )
    CheckRun.objects.create(check_obj=check, status="ok", value=1.0, created_at=timezone.now())
    _, queries = measure(client, "/", repeat=1)
    check.delete()
    return queries


def load(args: argparse.Namespace) -> int:
    """Fills the tables; returns the id of a check with a full history."""
    from django.db import connection
    from django.utils import timezone

    from batches.models import BatchItem, BatchOperation
    from monitoring.models import Alert, Check, CheckRun

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
            last_message=f"HTTP 200 in {100 + i % 900} ms",
            last_run_at=timezone.now(),
        )
        for i in range(args.checks)
    )
    ids = list(Check.objects.order_by("id").values_list("id", flat=True))
    first, last = ids[0], ids[-1]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {CheckRun._meta.db_table}
                (check_id, status, value, message, details, duration_ms, created_at, status_changed)
            SELECT %s + (g %% %s),
                   CASE WHEN g %% 97 = 0 THEN 'critical'
                        WHEN g %% 31 = 0 THEN 'warning' ELSE 'ok' END,
                   (g %% 1000)::float, 'HTTP 200', '{{}}', (g %% 50)::float,
                   now() - make_interval(secs => g * 0.06), g %% 97 = 0
            FROM generate_series(1, %s) AS g""",
            [first, args.checks, args.runs],
        )
        print(f"  {args.runs:,} check runs inserted in {time.perf_counter() - started:.1f} s")
    now = timezone.now()
    Alert.objects.bulk_create(
        Alert(
            dedup_key=f"check:{i}",
            title=f"check-{i % args.checks:04d} failing",
            severity=["warning", "critical", "info"][i % 3],
            status="open" if i < 60 else "acknowledged" if i < 100 else "resolved",
            opened_at=now,
            resolved_at=None if i < 100 else now,
            check_obj_id=first + i % args.checks,
        )
        for i in range(args.alerts)
    )
    batches = BatchOperation.objects.bulk_create(
        BatchOperation(
            operation="http",
            creator=f"creator-{i % 5}",
            status="running" if i < 10 else "completed",
            total_items=args.items // 100,
            succeeded_items=args.items // 200,
            started_at=now,
        )
        for i in range(100)
    )
    with connection.cursor() as cursor:
        ids = [str(b.pk) for b in batches]
        cursor.execute(
            f"""INSERT INTO {BatchItem._meta.db_table}
                (batch_id, key, status, attempts, error, next_attempt_at, updated_at)
            SELECT (%s::uuid[])[1 + g %% 100], 'item-' || g,
                   CASE WHEN g %% 2 = 0 THEN 'succeeded' ELSE 'pending' END, 0, '', now(), now()
            FROM generate_series(1, %s) AS g""",
            [ids, args.items],
        )
        cursor.execute("ANALYZE")
    from monitoring.history.rollups import refresh_rollups

    # The runs span 1,000,000 x 0.06 s (about 17 h): the real refresh, as a backfill.
    started = time.perf_counter()
    result = refresh_rollups(since=now - timedelta(seconds=args.runs * 0.06 + 600))
    print(
        f"  rollups built by refresh_rollups in {time.perf_counter() - started:.1f} s "
        f"({result.five_minute_buckets:,} 5-minute, {result.hourly_buckets:,} hourly buckets)"
    )
    started = time.perf_counter()
    result = refresh_rollups()
    print(f"  one every-minute rollup pass: {(time.perf_counter() - started) * 1000:.0f} ms")
    with connection.cursor() as cursor:
        # What autovacuum does to a live table: statistics, and the visibility map that lets
        # the history reads use index-only scans.
        cursor.execute("VACUUM ANALYZE")
    return last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument(
        "--keep", action="store_true", help="keep the loaded database (its name is printed)"
    )
    parser.add_argument("--reuse", metavar="NAME", help="measure a database kept by --keep")
    parser.add_argument(
        "--profile",
        metavar="PAGE",
        choices=sorted(TARGETS),
        help="print the cProfile of one request of this page (a label of the table)",
    )
    args = parser.parse_args()

    base = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if args.reuse:
        name = args.reuse
        url = urlunparse(urlparse(base)._replace(path=f"/{name}"))
    else:
        name, url = scratch_database(base)
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="opsconsole.settings",
        LOG_LEVEL="warning",
        ALLOWED_HOSTS="testserver,localhost",
    )
    os.environ.pop("REDIS_URL", None)
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0)
        user, _ = get_user_model().objects.get_or_create(
            username="bench", defaults={"is_staff": True, "is_superuser": True}
        )
        client = Client()
        client.force_login(user)
        from monitoring.models import Check

        if args.reuse:
            check_id = Check.objects.order_by("-id").values_list("id", flat=True)[0]
            empty_queries = None
        else:
            empty_queries = queries_with_one_check(client)
            print(
                f"Loading {args.checks} checks, {args.runs:,} runs, {args.alerts} alerts, "
                f"{args.items:,} batch items into {name} ..."
            )
            check_id = load(args)

        from monitoring.history import strip
        from monitoring.history.strip import compact_strips, status_strips
        from monitoring.history.uptime import uptimes
        from monitoring.web.chart import check_chart
        from opsconsole.models import ApiKey

        _, key = ApiKey.create(f"bench-{uuid.uuid4().hex[:6]}", "read")
        auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
        # Drawn strips are cached until their hours change (in production the current hour's
        # cell changes with every rollup pass, once a minute); a dashboard drawing all 500
        # anew is measured too, so the cache hides nothing.
        forget_strips = strip._compact_svg.cache_clear
        urls = {
            "dashboard": ("/", {}),
            "dashboard, every strip drawn anew": ("/", {}),
            "checks list": ("/checks/", {}),
            "checkrun admin page 1": ("/admin/monitoring/checkrun/", {}),
            "checkrun admin filtered by status": (
                "/admin/monitoring/checkrun/?status__exact=critical",
                {},
            ),
            "check page with chart": (f"/checks/{check_id}/", {}),
            "check page, 30-day chart": (f"/checks/{check_id}/?range=30d", {}),
            "api checks with uptime": ("/api/checks/", auth),
        }
        befores = {"dashboard, every strip drawn anew": forget_strips}
        if args.profile:
            url, headers = urls[args.profile]
            profile(client, url, before=befores.get(args.profile), **headers)
            return 0
        results = {
            label: measure(client, url, before=befores.get(label), **headers)
            for label, (url, headers) in urls.items()
        }
        failed = False
        print(f"\n{'page':40} {'median ms':>10} {'target':>8} {'queries':>8}")
        for label, (ms, queries) in results.items():
            ok = ms <= TARGETS[label] and queries <= QUERY_TARGETS.get(label, queries)
            failed |= not ok
            print(
                f"{label:40} {ms:10.1f} {TARGETS[label]:8.0f} {queries:8d}"
                f"  {'OK' if ok else 'MISSED'}"
            )
            if not ok:
                url, headers = urls[label]
                for query_ms, sql in slowest_queries(client, url, **headers):
                    print(f"    {query_ms:7.1f} ms  {sql}")
        check = Check.objects.get(pk=check_id)
        all_ids = list(Check.objects.values_list("pk", flat=True))
        pieces = {
            f"uptimes() of {len(all_ids)} checks": lambda: uptimes(all_ids),
            "uptimes(windows=('d1',)), the dashboard's": lambda: uptimes(all_ids, windows=["d1"]),
            f"status_strips() of {len(all_ids)} checks": lambda: status_strips(all_ids),
            "compact_strips(), drawn anew": lambda: (forget_strips(), compact_strips(all_ids)),
            "check_chart(check, '24h') (raw runs)": lambda: str(check_chart(check, "24h")),
            "check_chart(check, '30d') (rollups)": lambda: str(check_chart(check, "30d")),
        }
        print(f"\n{'history piece':40} {'median ms':>10} {'queries':>8}")
        for label, func in pieces.items():
            ms, queries = measure_call(func)
            print(f"{label:40} {ms:10.1f} {queries:8d}")
        full_queries = results["dashboard"][1]
        if empty_queries is not None:
            same = full_queries == empty_queries
            failed |= not same
            print(
                f"dashboard queries: {empty_queries} with one check,"
                f" {full_queries} on the full one"
                f"  {'OK (independent of data size)' if same else 'MISSED'}"
            )
        sizes = {label: len(client.get(url).content) for label, url in SIZED.items()}
        print(
            "response sizes: "
            + ", ".join(f"{label} {size / 1024:,.0f} KB" for label, size in sizes.items())
        )
        return 1 if failed else 0
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep or args.reuse:
            print(f'database kept: {name} (drop it with DROP DATABASE "{name}")')
        else:
            drop_database(base, name)


if __name__ == "__main__":
    sys.exit(main())
