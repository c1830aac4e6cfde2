"""Shared set-up for the observability benchmarks: a PostgreSQL database of their own with
500 checks and 1,000,000 check runs (1,800 of each check's 2,000 runs older than 30 days)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DATABASE", "bench_h8")
SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
CHECKS, RUNS_PER_CHECK, RECENT_PER_CHECK = 500, 2000, 200


def setup_django() -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    os.environ["DATABASE_URL"] = f"{SERVER}/{BENCH_DB}"
    os.environ.pop("REDIS_URL", None)  # local-memory cache: measures the snapshot itself
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")
    os.environ.setdefault("LOG_LEVEL", "warning")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed() -> float:
    """(Re)creates the data set; returns the seconds it took."""
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE monitoring_checkrun, monitoring_check RESTART IDENTITY CASCADE")
        cur.execute(
            """
            INSERT INTO monitoring_check (name, kind, component, description, config,
                interval_seconds, timeout_seconds, direction, debounce, enabled, ping_uuid, status,
                last_value, last_message, last_run_at, streak_status, streak_count, state,
                created_at, updated_at)
            SELECT 'check-' || g, 'http', 'comp-' || (g %% 20), '',
                '{"url": "http://127.0.0.1:9/"}', 60, 10, '', 1, true, md5(g::text)::uuid,
                (ARRAY['ok','ok','ok','warning','critical'])[1 + g %% 5], g * 1.5, 'fine', now(),
                '', 0, '{}', now(), now()
            FROM generate_series(1, %s) g
            """,
            [CHECKS],
        )
        cur.execute(
            """
            INSERT INTO monitoring_checkrun (check_id, status, value, message, details, duration_ms,
                created_at, status_changed)
            SELECT c.id, 'ok', g, '', '{}', 1.0,
                CASE WHEN g <= %s THEN now() - g * interval '5 minutes'
                     ELSE now() - interval '31 days' - g * interval '10 minutes' END,
                g %% 500 = 0
            FROM monitoring_check c, generate_series(1, %s) g
            """,
            [RECENT_PER_CHECK, RUNS_PER_CHECK],
        )
        cur.execute("ANALYZE monitoring_check")
        cur.execute("ANALYZE monitoring_checkrun")
    return time.monotonic() - started
