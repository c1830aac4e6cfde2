"""The run command's first start and later starts: a summary block at the end of start-up that
does not scroll away (URL, login, where the data lives, how to reset the password)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

from tests.conftest import ROOT, manage

# Both starts and stops together take about 13 s on a quiet machine (each start waits for the
# web application to answer); the bounds leave room for a machine under heavy load (55 s seen
# at a load of 12 on 2 cores), and a hang still fails with the output shown.
FIRST_START_LIMIT = 60
LATER_START_LIMIT = 45
STOP_LIMIT = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        key: value
        for key, value in os.environ.items()
        # The embedded default, as a new user starts it: SQLite in DATA_DIR, no Redis, defaults.
        if key
        not in {"DATABASE_URL", "REDIS_URL", "LOG_LEVEL", "ACCESS_LOG", "SECRET_KEY", "SITE_URL"}
    }
    env.update(DATA_DIR=str(data_dir), PORT=str(port), HOST="127.0.0.1", WEB_WORKERS="1")
    env["PATH"] = f"{Path(manage()[0]).parent}:{env.get('PATH', '')}"
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "run.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_for_summary(proc: subprocess.Popen, log: Path, limit: float) -> list[str]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "\nRunning. Ctrl-C stops" in text:
            return text.splitlines()
        assert proc.poll() is None, f"the run script ended early:\n{text[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no summary after {limit}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    try:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        proc.wait(timeout=STOP_LIMIT)
    finally:
        for leftover in processes:
            if leftover.is_running():
                leftover.kill()


def _block(lines: list[str]) -> dict[str, str]:
    """The summary's fields by label, checking it is the last thing printed."""
    rule = "=" * 72
    end = len(lines) - 1 - lines[::-1].index(rule)
    start = lines.index(rule, 0, end)
    after = [line for line in lines[end + 1 :] if line.strip()]
    assert after == ["Running. Ctrl-C stops the web server and the worker."], after
    fields = {}
    for line in lines[start + 1 : end]:
        label, _, value = line.strip().partition("  ")
        fields[label] = value.strip()
    return fields


def test_the_run_command_ends_start_up_with_a_summary_and_later_starts_give_the_reset_hint(
    once_per_suite, tmp_path
):
    data_dir = tmp_path / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()

    first_log = tmp_path / "first.log"
    proc = _start(data_dir, port, first_log)
    try:
        fields = _block(_wait_for_summary(proc, first_log, FIRST_START_LIMIT))
        first_seconds = time.monotonic() - started
        assert fields["Ops Console"] == f"{url}/   (admin: {url}/admin/)"
        login = re.fullmatch(
            r"admin / (\S{12,})   \(shown this once: keep it somewhere safe\)", fields["Login"]
        )
        assert login, fields["Login"]
        assert "manage.py changepassword admin" in fields["Password"]
        assert fields["Data"].startswith(f"{data_dir}   (SQLite database opsconsole.sqlite3")
        # The page answers, and neither it nor the routine start-up lines reach the terminal.
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            assert response.status == 200
        time.sleep(0.5)
        output = first_log.read_text()
        assert "GET /healthz" not in output
        assert " INFO " not in output and "AXES" not in output, output
    finally:
        _stop(proc)

    later_log = tmp_path / "later.log"
    later_started = time.monotonic()
    proc = _start(data_dir, port, later_log)
    try:
        lines = _wait_for_summary(proc, later_log, LATER_START_LIMIT)
        later_seconds = time.monotonic() - later_started
        fields = _block(lines)
        assert fields["Login"] == "admin   (password set on the first start, not shown again)"
        assert fields["Password"] == (
            "forgotten? reset it with: .venv/bin/python manage.py changepassword admin"
        )
        assert login.group(1) not in later_log.read_text()
        assert "printed above" not in later_log.read_text()
        # Only the summary and the last line: nothing routine to scroll past on a later start.
        assert len([line for line in lines if line.strip()]) <= 8, lines
    finally:
        _stop(proc)
    total = time.monotonic() - started
    print(
        f"first start {first_seconds:.1f}s, later start {later_seconds:.1f}s, "
        f"whole test {total:.1f}s (load {os.getloadavg()[0]:.1f})"
    )
