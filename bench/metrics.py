"""Benchmark: /metrics with 500 checks and 1,000,000 check runs on PostgreSQL.

Targets: a warm scrape (snapshot fresh) <= 100 ms, a cold one (snapshot rebuilt) <= 1 s.
Run: .venv/bin/python bench/metrics.py   (needs PostgreSQL at 127.0.0.1:5432; uses bench_h8)
"""

from __future__ import annotations

import statistics
import time

from _pgdata import CHECKS, RUNS_PER_CHECK, seed, setup_django

WARM_TARGET_MS, COLD_TARGET_MS = 100, 1000
COLD_ROUNDS, WARM_ROUNDS = 5, 50


def main() -> None:
    setup_django()
    print(f"seeding {CHECKS} checks and {CHECKS * RUNS_PER_CHECK:,} runs ... ", end="", flush=True)
    print(f"{seed():.1f}s")
    from django.test import Client

    from monitoring.observability import snapshot

    client = Client(HTTP_HOST="127.0.0.1")
    cold, warm = [], []
    for _ in range(COLD_ROUNDS):
        snapshot.reset_local()
        started = time.monotonic()
        response = client.get("/metrics")
        cold.append((time.monotonic() - started) * 1000)
        assert response.status_code == 200, response.status_code
        for _ in range(WARM_ROUNDS // COLD_ROUNDS):
            started = time.monotonic()
            client.get("/metrics")
            warm.append((time.monotonic() - started) * 1000)
    lines = response.content.decode().count("\n")
    print(f"exposition: {lines} lines, {len(response.content) / 1024:.0f} KiB")
    cold_worst, warm_p95 = max(cold), statistics.quantiles(warm, n=20)[-1]
    print(
        f"cold scrape (rebuild)  median {statistics.median(cold):7.1f} ms  "
        f"worst {cold_worst:7.1f} ms"
        f"   target <= {COLD_TARGET_MS} ms  {'OK' if cold_worst <= COLD_TARGET_MS else 'MISSED'}"
    )
    print(
        f"warm scrape (snapshot) median {statistics.median(warm):7.1f} ms  "
        f"p95   {warm_p95:7.1f} ms"
        f"   target <= {WARM_TARGET_MS} ms   {'OK' if warm_p95 <= WARM_TARGET_MS else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
