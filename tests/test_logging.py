"""Structured logs: JSON lines with job context; failing django-q2 tasks log ERROR with the
traceback and their job context."""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess

import pytest

from tests.conftest import closed_port, manage


class TaskFailure(RuntimeError):
    pass


def failing_task(order: int) -> None:
    logging.getLogger("tests.task").info("about to fail on order %s", order)
    raise TaskFailure(f"order {order} cannot be synced")


def passing_task() -> str:
    logging.getLogger("tests.task").info("working")
    return "done"


def json_lines(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def test_every_line_a_command_logs_is_json_with_the_job_context(subprocess_env):
    from monitoring.models import Check

    Check.objects.create(
        name="down-api",
        kind="http",
        config={"url": f"http://127.0.0.1:{closed_port()}/"},
        timeout_seconds=1,
    )
    env = {**subprocess_env, "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    script = (
        "import logging; from opsconsole.logging import job_context\n"
        "with job_context(job_id='j-1', job_name='sync', phase='processing', batch_id='b-9',\n"
        "                 progress='3/10'):\n"
        "    logging.getLogger('sync').warning('slow item')\n"
        "from django.core.management import call_command; call_command('runchecks', '--all')\n"
        "call_command('housekeeping', '--dry-run')\n"
    )
    result = subprocess.run(
        manage("shell", "-c", script), env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr)
    assert lines, "the command logged nothing"
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line)
    slow = next(line for line in lines if line["message"] == "slow item")
    assert slow["job_id"] == "j-1" and slow["job_name"] == "sync" and slow["phase"] == "processing"
    assert slow["batch_id"] == "b-9" and slow["progress"] == "3/10" and slow["level"] == "WARNING"


def test_a_failing_task_logs_error_with_job_id_name_and_traceback(subprocess_env):
    env = {**subprocess_env, "LOG_FORMAT": "json"}
    script = (
        "from django_q.tasks import async_task\n"
        "try:\n"
        "    async_task('tests.test_logging.failing_task', 42, task_name='sync-orders',\n"
        "               sync=True)\n"
        "except Exception:\n"
        "    pass\n"
    )
    result = subprocess.run(
        manage("shell", "-c", script), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr)
    inside = next(line for line in lines if line["message"] == "about to fail on order 42")
    assert inside["job_name"] == "sync-orders" and inside["job_id"]
    failed = [
        line for line in lines if line["level"] == "ERROR" and line["logger"] == "opsconsole.tasks"
    ]
    assert len(failed) == 1
    error = failed[0]
    assert error["job_id"] == inside["job_id"] and error["job_name"] == "sync-orders"
    assert error["phase"] == "failed"
    assert "Traceback" in error["traceback"] and "order 42 cannot be synced" in error["traceback"]
    assert "TaskFailure" in error["traceback"]


def test_the_worker_process_path_logs_the_failure_with_context(caplog, db):
    """django-q2's own worker loop (as qcluster runs it), in this process."""
    from django_q.worker import worker

    from opsconsole.logging import JsonFormatter

    tasks, results = multiprocessing.Queue(), multiprocessing.Queue()
    for name, func, args in (("ok-task", passing_task, ()), ("bad-task", failing_task, (7,))):
        tasks.put(
            {
                "id": f"id-{name}",
                "name": name,
                "func": f"tests.test_logging.{func.__name__}",
                "args": args,
                "kwargs": {},
            }
        )
    tasks.put("STOP")
    with caplog.at_level(logging.INFO):
        worker(tasks, results, multiprocessing.Value("f", -1))
    # formatted after the task ended: the context was stamped on each record when logged
    formatted = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "opsconsole.tasks"
    ]
    finished = next(
        line for line in formatted if line["job_name"] == "ok-task" and line["phase"] == "finished"
    )
    assert finished["job_id"] == "id-ok-task"
    failed = next(line for line in formatted if line["level"] == "ERROR")
    assert failed["job_id"] == "id-bad-task" and failed["job_name"] == "bad-task"
    assert "order 7 cannot be synced" in failed["error"]
    assert failed["traceback"].startswith("Traceback") and "failing_task" in failed["traceback"]
    # the context does not leak past the task
    from opsconsole.logging import current_job_context

    assert current_job_context() == {}


def test_console_format_is_human_readable(subprocess_env):
    env = {**subprocess_env, "LOG_FORMAT": "console"}
    script = (
        "import logging; from opsconsole.logging import job_context\n"
        "with job_context(job_name='sync', check='api'):\n"
        "    logging.getLogger('sync').warning('slow item')\n"
    )
    result = subprocess.run(
        manage("shell", "-c", script), env=env, capture_output=True, text=True, timeout=60
    )
    line = next(line for line in result.stderr.splitlines() if "slow item" in line)
    assert (
        "WARNING" in line
        and "sync: slow item" in line
        and "job_name=sync" in line
        and "check=api" in line
    )
    assert not line.startswith("{")
