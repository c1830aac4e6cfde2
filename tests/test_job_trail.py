"""Cron-run jobs leave a trail: every command cron may run writes, under ``LOG_FORMAT=json``, a
start and a finish line (job id, job name, phase, counts, duration), or its error and
traceback at ERROR. Each command runs as cron runs it: a real ``manage.py`` process."""

from __future__ import annotations

import json
import logging
import subprocess

import pytest

from monitoring.models import Check
from opsconsole.logging import job_run
from tests.conftest import manage, reply

pytestmark = pytest.mark.django_db(transaction=True)


def run_logged(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    result = subprocess.run(
        manage(*args),
        env={**env, "LOG_FORMAT": "json", "LOG_LEVEL": "info"},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    jobs = [line for line in lines if line["logger"] == "opsconsole.jobs"]
    assert jobs, f"no opsconsole.jobs line; stderr ends with:\n{result.stderr[-3000:]}"
    return result, jobs


def assert_trail(lines: list[dict], job_name: str, phase: str = "finished") -> dict:
    assert [line["phase"] for line in lines] == ["started", phase], lines
    start, end = lines
    assert start["job_name"] == end["job_name"] == job_name
    assert start["job_id"] == end["job_id"] and len(start["job_id"]) == 32
    assert isinstance(end["counts"], dict)
    assert end["duration_seconds"] >= 0
    return end


@pytest.mark.parametrize(
    ("args", "job_name", "counted"),
    [
        (("runchecks", "--all"), "runchecks", {"checks": 1, "ok": 1}),
        (("escalate",), "escalate", {"due": 0, "sent": 0}),
        (("backlog", "process"), "backlog process", {"processed": 0, "failed": 0}),
        (("batches", "recover"), "batches recover", {"released_items": 0}),
        (("housekeeping",), "housekeeping", {"removed": 0}),
        (("opsreport",), "opsreport", {}),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_cron_command_logs_start_and_finish_with_counts(
    subprocess_env, http_server, args, job_name, counted
):
    server = http_server(lambda request: reply(200))
    Check.objects.create(name="api", kind="http", config={"url": server.url})
    result, lines = run_logged(subprocess_env, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    end = assert_trail(lines, job_name)
    assert end["level"] == "INFO"
    for key, value in counted.items():
        assert end["counts"][key] == value, end


def test_metrics_health_finishes_with_its_exit_code(subprocess_env):
    result, lines = run_logged(subprocess_env, "metrics", "health")
    end = assert_trail(lines, "metrics health")
    assert end["exit_code"] == result.returncode
    assert end["level"] == ("INFO" if result.returncode == 0 else "WARNING")
    assert end["counts"]["level"] in ("ok", "warning", "critical")


def test_failing_job_logs_error_and_traceback(subprocess_env, tmp_path):
    """A database that cannot be opened: the run fails, and the log says so at ERROR."""
    broken = {**subprocess_env, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"}
    result, lines = run_logged(broken, "runchecks", "--all")
    assert result.returncode != 0
    end = assert_trail(lines, "runchecks", phase="failed")
    assert end["level"] == "ERROR"
    assert "unable to open database file" in end["error"]
    assert end["traceback"].startswith("Traceback")


def test_job_run_in_process_gives_each_run_its_own_id(caplog):
    caplog.set_level(logging.INFO, logger="opsconsole.jobs")
    for _ in range(2):
        with job_run("runchecks") as job:
            logging.getLogger("opsconsole.test").info("inside")
            job.count(checks=0)
    ids = {r._job_context["job_id"] for r in caplog.records}
    assert len(ids) == 2
    inside = [r for r in caplog.records if r.name == "opsconsole.test"]
    assert all(r._job_context["job_name"] == "runchecks" for r in inside)
