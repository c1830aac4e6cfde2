"""The ``logfile`` kind on real files: appended to, rotated, truncated, huge; only under
LOGFILE_CHECK_ROOTS, at load and at probe time."""

from __future__ import annotations

import os
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from monitoring.checks.runner import run_checks
from monitoring.kinds import ConfigError, Observation, get_kind
from monitoring.kinds.logfile import MAX_READ_BYTES
from monitoring.models import Check

PATTERN = "CRITICAL|WARNING"


@pytest.fixture
def logs(tmp_path, settings) -> Path:
    """A folder the checks may read (LOGFILE_CHECK_ROOTS), beside one they may not."""
    root = tmp_path / "logs"
    root.mkdir()
    (tmp_path / "private").mkdir()
    settings.LOGFILE_CHECK_ROOTS = [str(root)]
    return root


def make(path: Path | str, metric: str = "matches", **config) -> Check:
    """An unsaved check: the kind is judged alone, its state carried between runs here as
    ``Check.record`` carries it."""
    if metric == "matches":
        config.setdefault("pattern", PATTERN)
    config = get_kind("logfile").validate_config({"path": str(path), "metric": metric, **config})
    return Check(name="app-log", kind="logfile", config=config, state={})


def observe(check: Check) -> Observation:
    observation = check.kind_impl.observe(check, None)
    check.state = {**check.state, **(observation.state or {})}
    return observation


def append(path: Path, *lines: str, end: str = "\n") -> None:
    with open(path, "a") as handle:
        handle.write("\n".join(lines) + end)


# --- matches: appended, rotated, truncated ---------------------------------------------------


def test_matches_counts_lines_appended_since_the_last_run_within_the_window(once_per_suite, logs):
    log = logs / "app.log"
    append(log, "INFO started", "CRITICAL old trouble, before the check existed")
    check = make(log)
    first = observe(check)
    # History without timestamps cannot be placed in the window: not counted, and said so.
    assert first.value == 0 and "not counted" in first.message

    append(log, "INFO ok", "WARNING disk 91 %", "CRITICAL db down")
    second = observe(check)
    assert second.value == 2, second.message
    assert "CRITICAL db down" in second.message
    assert second.details["new_lines"] == 3

    third = observe(check)  # nothing new: nothing read, the window still holds both
    assert third.value == 2 and third.details["read_bytes"] == 0

    with time_machine.travel(timezone.now() + timedelta(minutes=32), tick=False):
        later = observe(check)
    assert later.value == 0, later.message
    assert check.state["logfile"]["minutes"] == {}


def test_first_read_counts_dated_lines_inside_the_window(once_per_suite, logs):
    now = datetime.now(UTC)
    log = logs / "monitor.log"
    append(
        log,
        f"[{(now - timedelta(hours=2)):%Y-%m-%d %H:%M:%S}] CRITICAL two hours ago",
        f"{(now - timedelta(minutes=10)):%Y-%m-%dT%H:%M:%S}Z WARNING ten minutes ago",
        f"{(now - timedelta(minutes=5)).astimezone():%Y-%m-%dT%H:%M:%S%z} INFO fine",
    )
    observation = observe(make(log))
    assert observation.value == 1, observation.message
    assert "WARNING ten minutes ago" in observation.message


def test_a_line_being_written_is_counted_once_complete(once_per_suite, logs):
    log = logs / "app.log"
    log.write_text("")
    check = make(log)
    observe(check)
    append(log, "CRITICAL half a li", end="")
    assert observe(check).value == 0
    append(log, "ne, now complete")
    observation = observe(check)
    assert observation.value == 1
    assert "CRITICAL half a line, now complete" in observation.message


def test_rotation_finishes_the_old_file_then_reads_the_new_one_from_its_start(once_per_suite, logs):
    log = logs / "app.log"
    log.write_text("INFO start\n")
    check = make(log)
    observe(check)
    # Written after the last run, just before logrotate renamed the file: not lost.
    append(log, "CRITICAL in the old file after the last run")
    log.rename(logs / "app.log.1")
    append(log, "WARNING first line of the new file", "CRITICAL second")
    observation = observe(check)
    assert observation.value == 3, observation.message
    assert "rotated (finished the old file, now app.log.1)" in observation.message
    assert check.state["logfile"]["offset"] == log.stat().st_size
    assert check.state["logfile"]["inode"] == log.stat().st_ino

    # Rotated again, the old file compressed away: the new one is still read from its start.
    log.rename(logs / "app.log.2")
    log.write_text("CRITICAL after the second rotation\n")
    os.unlink(logs / "app.log.2")
    observation = observe(check)
    assert observation.value == 4
    assert "the rest of the old file was not found" in observation.message


def test_truncation_restarts_from_the_beginning(once_per_suite, logs):
    log = logs / "app.log"
    log.write_text("INFO a fairly long line of routine output\n" * 50)
    check = make(log)
    observe(check)
    log.write_text("CRITICAL after truncation\n")  # shorter than the offset
    observation = observe(check)
    assert observation.value == 1
    assert "truncated" in observation.message

    # Truncated and written past the old offset between two runs: the bytes before the
    # offset changed, so the file is read again from its start.
    offset = check.state["logfile"]["offset"]
    log.write_text("WARNING rewritten " + "x" * offset + "\n")
    observation = observe(check)
    assert observation.value == 2, observation.message
    assert "rewritten since the last run" in observation.message


def test_a_huge_file_is_never_read_whole(once_per_suite, logs):
    log = logs / "big.log"
    line = b"INFO " + b"x" * 94 + b"\n"  # 100 bytes
    with open(log, "wb") as handle:
        handle.write(line * 30_000)  # 3 MB of history
    check = make(log)
    first = observe(check)
    assert first.details["read_bytes"] <= MAX_READ_BYTES

    burst = line * 99 + b"CRITICAL " + b"y" * 90 + b"\n"  # a match every 100 lines
    with open(log, "ab") as handle:
        handle.write(burst * 1_000)  # 10 MB written between two runs
    started = time.monotonic()
    observation = observe(check)
    elapsed = time.monotonic() - started
    assert observation.details["read_bytes"] <= MAX_READ_BYTES
    assert observation.details["skipped_bytes"] >= 10_000_000 - MAX_READ_BYTES
    assert "skipped" in observation.message and "MB unread" in observation.message
    assert check.state["logfile"]["offset"] == log.stat().st_size
    # Only the newest 4 MB were read: their matches count, and no more than that.
    assert 0 < observation.value <= MAX_READ_BYTES // 10_000 + 1
    assert elapsed < 5, elapsed
    print(f"10 MB burst: read {observation.details['read_bytes']:,} bytes in {elapsed:.3f}s")


# --- age -------------------------------------------------------------------------------------


def test_age_is_the_time_since_the_file_was_last_written(once_per_suite, logs):
    log = logs / "nightly_stable_tables.log"
    append(log, "2025-11-05 02:00:01 sync started", "2025-11-05 02:14:09 sync finished: 312 users")
    three_hours_ago = time.time() - 3 * 3600
    os.utime(log, (three_hours_ago, three_hours_ago))
    check = make(log, metric="age")
    observation = observe(check)
    assert observation.value == pytest.approx(3 * 3600, abs=60)
    assert "last written 3h ago" in observation.message
    assert "sync finished: 312 users" in observation.message
    assert check.threshold_status(observation.value) == "warning"  # default warn 2 h, crit 4 h


def test_a_missing_file_is_critical_no_data(once_per_suite, logs):
    observation = observe(make(logs / "not-yet.log", metric="age"))
    assert observation.status == "critical" and observation.no_data
    assert "not found" in observation.message


# --- only under LOGFILE_CHECK_ROOTS ------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["private/secret.log", "logs/../private/secret.log", "logs/link-out.log", "/etc/passwd"],
)
def test_a_path_outside_the_roots_is_refused_at_load(once_per_suite, logs, where):
    (logs.parent / "private" / "secret.log").write_text("password=hunter2\n")
    (logs / "link-out.log").symlink_to(logs.parent / "private" / "secret.log")
    path = where if where.startswith("/") else str(logs.parent / where)
    with pytest.raises(ConfigError) as refused:
        get_kind("logfile").validate_config({"path": path, "metric": "age"})
    assert "outside LOGFILE_CHECK_ROOTS" in str(refused.value)
    assert "add its folder to the LOGFILE_CHECK_ROOTS setting" in str(refused.value)


def test_with_no_roots_configured_no_file_may_be_read(once_per_suite, tmp_path, settings):
    settings.LOGFILE_CHECK_ROOTS = []
    (tmp_path / "app.log").write_text("x\n")
    with pytest.raises(ConfigError, match="empty: no log file may be read"):
        get_kind("logfile").validate_config({"path": str(tmp_path / "app.log"), "metric": "age"})


def test_a_symlink_repointed_outside_the_roots_is_refused_at_probe_time(once_per_suite, logs):
    inside = logs / "real.log"
    inside.write_text("CRITICAL inside\n")
    secret = logs.parent / "private" / "secret.log"
    secret.write_text("CRITICAL password=hunter2\n")
    link = logs / "current.log"
    link.symlink_to(inside)
    check = make(link)  # accepted: it resolves inside the roots
    observe(check)
    link.unlink()
    link.symlink_to(secret)
    observation = observe(check)
    assert observation.error and "outside LOGFILE_CHECK_ROOTS" in observation.error
    assert "hunter2" not in str(observation)
    assert observation.state is None  # nothing read, nothing remembered


def test_config_problems_are_named(once_per_suite, logs):
    kind = get_kind("logfile")
    with pytest.raises(ConfigError) as refused:
        kind.validate_config({"path": "relative.log", "metric": "matches", "pattern": "(["})
    assert set(refused.value.errors) == {"config.path", "config.pattern"}
    with pytest.raises(ConfigError) as refused:
        kind.validate_config({"path": str(logs / "a.log"), "metric": "age", "window": "5m"})
    assert "only used with metric: matches" in refused.value.errors["config.window"]
    with pytest.raises(ConfigError, match="from 1m to 24h"):
        kind.validate_config({"path": str(logs / "a.log"), "metric": "matches", "window": "2d"})


def test_a_fifo_under_the_roots_is_refused_without_blocking(once_per_suite, logs):
    fifo = logs / "pipe.log"
    os.mkfifo(fifo)
    observation = observe(make(fifo, metric="age"))
    assert observation.error == f"{fifo} is not a regular file"


# --- through loadchecks and the runner ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_loadchecks_refuses_a_path_outside_the_roots_and_writes_nothing(logs, tmp_path):
    (logs.parent / "private" / "secret.log").write_text("x\n")
    path = tmp_path / "checks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            checks:
              - name: secret-log
                kind: logfile
                config: {{path: "{logs}/../private/secret.log", metric: age}}
            """
        )
    )
    with pytest.raises(CommandError) as refused:
        call_command("loadchecks", str(path))
    assert "check 'secret-log': config.path:" in str(refused.value)
    assert "outside LOGFILE_CHECK_ROOTS" in str(refused.value)
    assert not Check.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_runs_keep_the_offset_on_the_check_between_passes(logs, tmp_path):
    log = logs / "live_db_sync.log"
    log.write_text("INFO sync ok\n")
    path = tmp_path / "checks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            checks:
              - name: sync-log-errors
                kind: logfile
                config: {{path: "{log}", metric: matches, pattern: "ERROR|CRITICAL", window: 30m}}
                crit: 2
                startup_grace: 0s
            """
        )
    )
    call_command("loadchecks", str(path))
    check = Check.objects.get(name="sync-log-errors")
    [first] = run_checks([check], claim=False)
    assert first.run.status == "ok" and first.run.value == 0
    append(log, "ERROR user 42: timeout", "INFO sync ok", "ERROR user 43: timeout", "CRITICAL x")
    check = Check.objects.get(name="sync-log-errors")
    [second] = run_checks([check], claim=False)
    assert second.run.value == 3
    assert second.run.status == "critical", second.run.message
    stored = Check.objects.get(pk=check.pk).state["logfile"]
    assert stored["offset"] == log.stat().st_size
