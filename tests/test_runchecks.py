"""runchecks: due checks, claims, output, exit codes, debounce; two runners at once."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from monitoring.checks.runner import run_checks
from monitoring.kinds import Observation
from monitoring.models import Check, CheckRun, CheckStatus
from tests.conftest import closed_port, manage, reply

pytestmark = pytest.mark.django_db


def http_check(name: str, url: str, **fields) -> Check:
    return Check.objects.create(name=name, kind="http", config={"url": url}, **fields)


def test_prints_a_table_of_results(http_server, capsys):
    server = http_server()
    http_check("web", server.url)
    http_check("down", f"http://127.0.0.1:{closed_port()}/")
    call_command("runchecks")
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "CHECK", "RUN", "VALUE", "TIME", "MESSAGE"]
    assert any(line.startswith("web ") and " ok " in line for line in out.splitlines())
    assert any(
        line.startswith("down ") and "critical" in line and "unreachable" in line
        for line in out.splitlines()
    )
    assert "2 checks: 1 critical, 1 ok (after debounce; 2 changed status, marked *)" in out


def test_json_output(http_server, capsys):
    http_check("web", http_server().url)
    call_command("runchecks", "--json")
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["name"] == "web" and row["status"] == "ok" and row["value"] > 0


def test_only_due_checks_run_and_each_slot_once(http_server, capsys):
    server = http_server()
    check = http_check("web", server.url, interval_seconds=60)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        call_command("runchecks")
        call_command("runchecks")  # not due again within the interval
    assert CheckRun.objects.filter(check_obj=check).count() == 1
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        call_command("runchecks")
    assert CheckRun.objects.filter(check_obj=check).count() == 1
    # A scheduler that fires a little early still runs a 1-minute check every minute.
    with time_machine.travel(start + timedelta(seconds=58), tick=False):
        call_command("runchecks")
    assert CheckRun.objects.filter(check_obj=check).count() == 2
    assert len(server.requests) == 2


def test_disabled_checks_are_not_due(http_server):
    server = http_server()
    http_check("off", server.url, enabled=False)
    call_command("runchecks")
    call_command("runchecks", "--all")
    assert server.requests == []


def test_named_checks_run_now_and_unknown_names_fail(http_server):
    server = http_server()
    http_check("web", server.url)
    call_command("runchecks", "--check", "web")
    call_command("runchecks", "--check", "web")
    assert len(server.requests) == 2
    with pytest.raises(CommandError, match="no check named 'nope'"):
        call_command("runchecks", "--check", "web", "--check", "nope")


def test_fail_on_sets_the_exit_code(http_server):
    ok = http_server()
    bad = http_server(lambda r: reply(503))
    http_check("ok", ok.url)
    with pytest.raises(SystemExit) as none_bad:
        call_command("runchecks", "--all", "--fail-on", "warning")
        raise SystemExit(0)
    assert none_bad.value.code == 0
    http_check("bad", bad.url)
    with pytest.raises(SystemExit) as exit_info:
        call_command("runchecks", "--all", "--fail-on", "critical")
    assert exit_info.value.code == 1


def test_debounce_needs_consecutive_failures_before_the_status_changes():
    check = Check.objects.create(
        name="d", kind="system", config={"metric": "cpu"}, debounce=3, status=CheckStatus.OK
    )
    statuses = []
    for _ in range(3):
        check.record(Observation(error="unreachable"), duration_ms=1)
        statuses.append(check.status)
    assert statuses == ["ok", "ok", "critical"]
    assert CheckRun.objects.filter(check_obj=check, status="critical").count() == 3
    assert CheckRun.objects.filter(check_obj=check, status_changed=True).count() == 1
    # Recovery is immediate.
    check.record(Observation(value=1), duration_ms=1)
    assert check.status == "ok"


def test_an_interrupted_streak_starts_again():
    check = Check.objects.create(
        name="d", kind="system", config={"metric": "cpu"}, debounce=2, status=CheckStatus.OK
    )
    check.record(Observation(error="x"), duration_ms=1)
    check.record(Observation(value=1), duration_ms=1)
    check.record(Observation(error="x"), duration_ms=1)
    assert check.status == "ok"
    check.record(Observation(error="x"), duration_ms=1)
    assert check.status == "critical"


def test_run_checks_records_state_on_the_check(http_server):
    check = http_check("web", http_server().url)
    (result,) = run_checks([check], claim=False)
    check.refresh_from_db()
    assert (
        check.status == "ok"
        and check.last_run_at is not None
        and check.last_value == result.run.value
    )
    assert check.next_run_at > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_two_runchecks_started_together_run_each_due_check_once(http_server, subprocess_env):
    server = http_server()
    for i in range(40):
        http_check(f"web-{i}", f"{server.url}/{i}")
    procs = [
        subprocess.Popen(
            manage("runchecks", "--json"),
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(len(json.loads(out)["results"]))
    assert CheckRun.objects.count() == 40
    assert sorted(outputs)[1] > 0 and sum(outputs) == 40
    assert sorted(r.path for r in server.requests) == sorted(f"/{i}" for i in range(40))
