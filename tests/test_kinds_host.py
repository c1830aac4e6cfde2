"""system and process kinds, compared with psutil and with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from monitoring.checks.runner import run_checks
from monitoring.models import Check, CheckStatus

pytestmark = pytest.mark.django_db


def run_one(check: Check):
    (result,) = run_checks([check], claim=False)
    check.refresh_from_db()
    return result.run


def system(metric: str, **fields) -> Check:
    config = {"metric": metric, **({"path": "/"} if metric == "disk" else {})}
    return Check.objects.create(
        name=f"sys-{metric}-{uuid.uuid4().hex[:6]}", kind="system", config=config, **fields
    )


@pytest.mark.parametrize(
    ("metric", "expected", "tolerance"),
    [
        ("memory", lambda: psutil.virtual_memory().percent, 3),
        ("disk", lambda: psutil.disk_usage("/").percent, 1),
        ("swap", lambda: psutil.swap_memory().percent, 3),
        ("free_memory_mb", lambda: psutil.virtual_memory().available / 1024 / 1024, 300),
        ("load", lambda: os.getloadavg()[0], 2),
        ("cpu", lambda: psutil.cpu_percent(interval=0.5), 60),
    ],
)
def test_system_values_agree_with_psutil(metric, expected, tolerance):
    run = run_one(system(metric))
    assert run.value == pytest.approx(expected(), abs=tolerance)


def test_thresholds_around_the_current_value_give_warning_and_critical():
    value = psutil.disk_usage("/").percent
    assert run_one(system("disk", warn=value - 1, crit=value + 5)).status == CheckStatus.WARNING
    assert run_one(system("disk", warn=value - 2, crit=value - 1)).status == CheckStatus.CRITICAL
    assert run_one(system("disk", warn=value + 1, crit=value + 2)).status == CheckStatus.OK


def test_free_memory_is_bad_below_the_threshold():
    free = psutil.virtual_memory().available / 1024 / 1024
    run = run_one(system("free_memory_mb", crit=free + 10_000))
    assert run.status == CheckStatus.CRITICAL
    assert "below critical threshold" in run.message


def _sleeper(marker: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])


def _wait_gone(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=10)


def test_process_found_by_command_line_then_killed_then_restarts_counted():
    marker = f"opsconsole-test-worker-{uuid.uuid4().hex}"
    check = Check.objects.create(
        name="worker", kind="process", config={"cmdline": marker, "min_count": 1}
    )
    proc = _sleeper(marker)
    try:
        time.sleep(0.2)
        run = run_one(check)
        assert run.status == CheckStatus.OK, run.message
        assert run.details["count"] == 1 and run.details["pids"] == [proc.pid]
        assert run.value == pytest.approx(
            psutil.Process(proc.pid).memory_info().rss / 1024 / 1024, rel=0.2
        )

        _wait_gone(proc)
        run = run_one(check)
        assert run.status == CheckStatus.CRITICAL
        assert "none running" in run.message

        # Restarted twice (a new PID each time): counted in restarts per hour.
        for _ in range(2):
            proc = _sleeper(marker)
            time.sleep(0.2)
            run_one(check)
            _wait_gone(proc)
            run_one(check)
        proc = _sleeper(marker)
        time.sleep(0.2)
        run = run_one(check)
        assert run.status == CheckStatus.OK
        assert run.details["restarts_last_hour"] >= 2
    finally:
        if proc.poll() is None:
            _wait_gone(proc)


def test_many_restarts_per_hour_raise_the_status():
    marker = f"opsconsole-test-flappy-{uuid.uuid4().hex}"
    check = Check.objects.create(
        name="flappy",
        kind="process",
        config={"cmdline": marker, "restarts_warn": 1, "restarts_crit": 3},
    )
    statuses = []
    for _ in range(5):
        proc = _sleeper(marker)
        time.sleep(0.15)
        statuses.append(run_one(check).status)
        _wait_gone(proc)
    assert statuses[0] == CheckStatus.OK
    assert CheckStatus.WARNING in statuses and statuses[-1] == CheckStatus.CRITICAL


def test_process_memory_threshold():
    marker = f"opsconsole-test-rss-{uuid.uuid4().hex}"
    check = Check.objects.create(
        name="rss", kind="process", config={"cmdline": marker}, warn=1, crit=100_000
    )
    proc = _sleeper(marker)
    try:
        time.sleep(0.2)
        assert run_one(check).status == CheckStatus.WARNING
    finally:
        _wait_gone(proc)
