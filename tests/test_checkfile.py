"""loadchecks: the whole file is validated first; upsert by name; --prune."""

from __future__ import annotations

import textwrap

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import Check

GOOD = """
checks:
  - name: api-health
    kind: http
    component: api
    interval: 1m
    timeout: 5s
    config: {url: "http://127.0.0.1:8080/health", expect_status: 200, contains: "ok"}
    warn: 800
    crit: 3000
  - name: host-disk
    kind: system
    config: {metric: disk, path: /}
    depends_on: api-health
"""


def write(tmp_path, text: str, name: str = "checks.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.django_db
def test_loads_checks_and_is_idempotent(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    call_command("loadchecks", str(path))
    assert "2 created" in capsys.readouterr().out
    api = Check.objects.get(name="api-health")
    assert (api.kind, api.component, api.interval_seconds, api.timeout_seconds) == (
        "http",
        "api",
        60,
        5.0,
    )
    assert (api.warn, api.crit) == (800, 3000)
    assert Check.objects.get(name="host-disk").depends_on == api

    call_command("loadchecks", str(path))
    assert "2 unchanged" in capsys.readouterr().out
    assert Check.objects.count() == 2


@pytest.mark.django_db
def test_checks_without_interval_or_timeout_take_the_configured_defaults(tmp_path, settings):
    settings.CHECKS_DEFAULT_INTERVAL = 300
    settings.CHECKS_DEFAULT_TIMEOUT = 2.5
    call_command("loadchecks", str(write(tmp_path, GOOD)))
    disk = Check.objects.get(name="host-disk")
    assert (disk.interval_seconds, disk.timeout_seconds) == (300, 2.5)
    made = Check.objects.create(name="made-in-the-admin", kind="heartbeat")
    assert (made.interval_seconds, made.timeout_seconds) == (300, 2.5)


@pytest.mark.django_db
def test_json_files_load_too(tmp_path):
    path = write(
        tmp_path,
        '{"checks": [{"name": "db", "kind": "database", "config": {"alias": "default"}}]}',
        "checks.json",
    )
    call_command("loadchecks", str(path))
    assert Check.objects.get(name="db").kind == "database"


@pytest.mark.django_db
def test_update_changes_fields_and_prune_deletes_the_rest(tmp_path, capsys):
    call_command("loadchecks", str(write(tmp_path, GOOD)))
    Check.objects.create(name="stray", kind="system", config={"metric": "cpu"})
    changed = GOOD.replace("warn: 800", "warn: 900")
    call_command("loadchecks", str(write(tmp_path, changed)), "--prune")
    out = capsys.readouterr().out
    assert "1 updated" in out and "1 deleted" in out
    assert Check.objects.get(name="api-health").warn == 900
    assert not Check.objects.filter(name="stray").exists()


@pytest.mark.django_db
def test_an_update_writes_only_what_the_file_changed(tmp_path):
    """Reloading the file while runners work: the UPDATE names only the changed fields, so a
    run recorded or a slot claimed meanwhile (status, lease, next run) is not undone."""
    call_command("loadchecks", str(write(tmp_path, GOOD)))
    changed = GOOD.replace("warn: 800", "warn: 900")
    with CaptureQueriesContext(connection) as queries:
        call_command("loadchecks", str(write(tmp_path, changed)))
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1 and '"warn"' in updates[0]
    for runtime in ('"status"', '"lease_owner"', '"next_run_at"', '"last_run_at"'):
        assert runtime not in updates[0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{name: x, kind: nosuchkind, config: {}}",
            ["check 'x'", "kind", "unknown kind 'nosuchkind'"],
        ),
        ("{name: x, kind: http, config: {}}", ["check 'x'", "config.url", "is required"]),
        (
            "{name: x, kind: http, interval: 5 minutes, config: {url: 'http://a'}}",
            ["check 'x'", "interval", "duration"],
        ),
        (
            "{name: x, kind: http, warn: 6000, crit: 100, config: {url: 'http://a'}}",
            ["check 'x'", "warn", "beyond crit"],
        ),
        (
            "{name: x, kind: http, warn: 6000, config: {url: 'http://a'}}",
            ["check 'x'", "warn", "beyond crit 5000"],
        ),
        (
            "{name: x, kind: system, direction: below, warn: 10, crit: 50, config: {metric: cpu}}",
            ["warn", "beyond crit"],
        ),
        ("{name: x, kind: http, config: {url: 'ftp://a'}}", ["config.url", "http://"]),
        ("{name: x, kind: http, debounce: 0, config: {url: 'http://a'}}", ["debounce"]),
        (
            "{name: x, kind: http, colour: red, config: {url: 'http://a'}}",
            ["colour", "unknown field"],
        ),
        (
            "{name: x, kind: http, depends_on: nobody, config: {url: 'http://a'}}",
            ["depends_on", "no check named 'nobody'"],
        ),
        (
            "{name: x, kind: process, config: {cmdline: '('}}",
            ["config.cmdline", "regular expression"],
        ),
    ],
)
def test_invalid_entries_name_check_and_field_and_write_nothing(tmp_path, entry, expected):
    text = GOOD + f"  - {entry}\n"
    with pytest.raises(CommandError) as error:
        call_command("loadchecks", str(write(tmp_path, text)))
    message = str(error.value)
    assert "nothing was written" in message
    for fragment in expected:
        assert fragment in message
    assert Check.objects.count() == 0


@pytest.mark.django_db
def test_every_problem_is_listed_at_once(tmp_path):
    text = """
    checks:
      - {name: a, kind: http, config: {}}
      - {name: b, kind: http, timeout: soon, config: {url: 'http://x'}}
      - {name: a, kind: system, config: {metric: cpu}}
    """
    with pytest.raises(CommandError) as error:
        call_command("loadchecks", str(write(tmp_path, text)))
    message = str(error.value)
    assert "check 'a': config.url" in message
    assert "check 'b': timeout" in message
    assert "appears more than once" in message


@pytest.mark.django_db
def test_a_channel_or_window_named_by_a_list_or_mapping_is_refused_not_a_crash(tmp_path):
    text = """
    channels:
      - {name: [1, 2], kind: webhook, url: "http://127.0.0.1:9/x"}
    maintenance:
      - {name: {a: 1}, component: api, start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z"}
    """
    with pytest.raises(CommandError) as error:
        call_command("loadchecks", str(write(tmp_path, text)))
    message = str(error.value)
    assert "channels[0]: name: is required" in message
    assert "maintenance[0]: name: is required" in message
    assert "nothing was written" in message


@pytest.mark.django_db
def test_unreadable_or_malformed_files_are_refused(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("loadchecks", str(tmp_path / "missing.yaml"))
    with pytest.raises(CommandError, match="not valid YAML"):
        call_command("loadchecks", str(write(tmp_path, "checks: [unclosed")))
    with pytest.raises(CommandError, match="unknown section"):
        call_command("loadchecks", str(write(tmp_path, "chekcs: []")))


def test_loadchecks_exits_non_zero_from_the_shell(tmp_path, subprocess_env):
    import subprocess

    from tests.conftest import manage

    path = write(tmp_path, "checks:\n  - {name: bad, kind: http, config: {}}\n")
    result = subprocess.run(
        manage("loadchecks", str(path)),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "check 'bad': config.url: is required" in result.stderr


@pytest.mark.django_db
def test_an_escalation_naming_a_channel_nobody_defines_is_refused_and_writes_nothing(tmp_path):
    path = write(
        tmp_path,
        """
        checks: []
        channels:
          - {name: oncall-webhook, kind: webhook, url: "https://hooks.example/ops"}
        escalation:
          critical: {steps: [{after: 0s, channels: [oncall-webhook]}, {after: 30m, channels: [oncall-email]}]}
        """,
    )
    with pytest.raises(CommandError) as refused:
        call_command("loadchecks", str(path))
    assert (
        "escalation.critical.steps[1].channels: no channel named 'oncall-email' in this file's "
        "channels (defined here: oncall-webhook) or in the database" in str(refused.value)
    )
    from monitoring.models import EscalationStep, NotificationChannel

    assert not NotificationChannel.objects.exists()
    assert not any("oncall-webhook" in step.channels for step in EscalationStep.objects.all())

    # A channel made in the admin (or by an earlier file) is known too.
    NotificationChannel.objects.create(name="oncall-email", kind="email", recipients="a@b.c")
    call_command("loadchecks", str(path))
    assert NotificationChannel.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_example_check_file_loads_and_runs_on_this_database(tmp_path, settings):
    """docs/example-checks.yaml, verbatim, against seed-shaped `events` rows: its SQL check gets
    the right count through the portable {since} form on SQLite and on PostgreSQL."""
    import shutil
    from datetime import timedelta
    from pathlib import Path

    from django.db import connection
    from django.utils import timezone

    from monitoring.checks.runner import run_checks

    settings.SQL_CHECKS_ALLOW_SUPERUSER = True  # the PostgreSQL test run connects as postgres
    example = Path(__file__).resolve().parent.parent / "docs" / "example-checks.yaml"
    path = tmp_path / "example-checks.yaml"
    shutil.copy(example, path)
    now = timezone.now()
    stamp = "timestamptz" if connection.vendor == "postgresql" else "datetime"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS events")
        cursor.execute(f"CREATE TABLE events (id integer PRIMARY KEY, created_at {stamp} NOT NULL)")
    try:
        with connection.cursor() as cursor:
            rows = [(i, now - timedelta(minutes=i % 50)) for i in range(150)]
            rows += [(1000 + i, now - timedelta(hours=3)) for i in range(40)]  # outside the hour
            if connection.vendor == "sqlite":
                # Stored as Django stores SQLite datetimes: naive UTC text.
                rows = [(i, at.strftime("%Y-%m-%d %H:%M:%S.%f")) for i, at in rows]
            cursor.executemany("INSERT INTO events (id, created_at) VALUES (%s, %s)", rows)
        call_command("loadchecks", str(path))
        events = Check.objects.get(name="events-last-hour")
        [result] = run_checks([events], claim=False)
        assert result.run.value == 150, result.run.message
        assert result.run.status == "ok", result.run.message
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS events")
