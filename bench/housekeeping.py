"""Benchmark: housekeeping removing ~900,000 of 1,000,000 check runs on PostgreSQL.

Target: no single delete transaction over 1 s (reports the longest).
Run: .venv/bin/python bench/housekeeping.py   (needs PostgreSQL at 127.0.0.1:5432; uses bench_h8)
"""

from __future__ import annotations

import time

from _pgdata import CHECKS, RUNS_PER_CHECK, seed, setup_django

TARGET_TRANSACTION_S = 1.0


def main() -> None:
    setup_django()
    print(f"seeding {CHECKS} checks and {CHECKS * RUNS_PER_CHECK:,} runs ... ", end="", flush=True)
    print(f"{seed():.1f}s")
    from monitoring.models import CheckRun
    from opsconsole.housekeeping import run_housekeeping

    before = CheckRun.objects.count()
    started = time.monotonic()
    outcome = run_housekeeping()
    elapsed = time.monotonic() - started
    runs = next(r for r in outcome.results if r.name == "check runs")
    after = CheckRun.objects.count()
    print(
        f"check runs: {before:,} -> {after:,}, "
        f"removed {runs.removed:,} in {runs.transactions} transactions"
    )
    print(f"total time {elapsed:.1f} s ({runs.removed / elapsed:,.0f} rows/s)")
    verdict = "OK" if outcome.longest_seconds <= TARGET_TRANSACTION_S else "MISSED"
    print(
        f"longest delete transaction {outcome.longest_seconds * 1000:.0f} ms   target <= "
        f"{TARGET_TRANSACTION_S * 1000:.0f} ms   {verdict}"
    )


if __name__ == "__main__":
    main()
