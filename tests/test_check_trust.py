"""Issue 14, the check side: alerts you can trust.

Baselines that stay broken while a drop persists, start-up grace on a fresh install, mutes a
person set, messages that say why, a pass that survives one failing record, and a stalled
scheduler found even while heartbeats keep pinging.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from monitoring.checks.baseline import rule_problems
from monitoring.checks.checkfile import CheckFileError, apply_document, validate_document
from monitoring.checks.runner import run_checks, run_due_checks
from monitoring.kinds import CheckKind, Observation, register
from monitoring.kinds.queue import QUEUE_DEFAULTS, judge
from monitoring.models import (
    Alert,
    AlertEvent,
    Check,
    CheckRun,
    MaintenanceWindow,
    WindowSource,
)
from monitoring.observability.readings import QueueReading, read_queue, read_scheduler
from monitoring.observability.stalled import DEDUP_KEY, check_monitoring_stalled
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


# --- baselines -------------------------------------------------------------------------------


def value_check(name: str = "participants", **fields) -> Check:
    """A check whose value the test gives: ``sql_value`` rows recorded with ``record``."""
    fields.setdefault("baseline", {"drop_pct": 50, "window": 12})
    return Check.objects.create(
        name=name,
        kind="sql_value",
        config={"sql": "SELECT 1"},
        interval_seconds=300,
        **fields,
    )


def record_values(check: Check, values: list[float], start, step=timedelta(minutes=5)):
    runs = []
    for i, value in enumerate(values):
        runs.append(
            check.record(
                Observation(value=value, message=f"value {value:g}"),
                duration_ms=1,
                now=start + i * step,
            )
        )
    return runs


def test_a_persisting_drop_stays_a_drop_until_the_value_comes_back():
    """Acceptance 3: 12 values around 3,000, then 20 at 900: all 20 warning; back: ok."""
    check = value_check()
    start = timezone.now() - timedelta(days=1)
    around = [2950, 3050, 3000, 2980, 3020, 3010, 2990, 3040, 2960, 3000, 3030, 2970]
    assert all(r.status == "ok" for r in record_values(check, around, start))
    drop = record_values(check, [900] * 20, start + timedelta(hours=1))
    assert [r.status for r in drop] == ["warning"] * 20
    assert all("dropped 70 % vs baseline 3,000" in r.message for r in drop)
    assert "drop_pct 50 %" in drop[-1].message
    assert all(r.details["baseline_breach"] is True for r in drop)
    back = record_values(check, [3000], start + timedelta(hours=4))
    assert back[0].status == "ok" and "baseline_breach" not in back[0].details
    check.refresh_from_db()
    assert check.status == "ok"


def test_a_time_window_baseline_stays_frozen_while_the_drop_lasts_longer_than_the_window():
    check = value_check(baseline={"drop_pct": 50, "window": "2h"})
    start = timezone.now() - timedelta(days=2)
    record_values(check, [1000] * 24, start)  # two hours of 5-minute runs
    # Six hours at 300: three times longer than the window, still a drop.
    drop = record_values(check, [300] * 72, start + timedelta(hours=2))
    assert {r.status for r in drop} == {"warning"}
    assert "median of the last 2h" in drop[-1].message
    assert check.baseline_history() == [1000.0] * 24


def test_a_time_window_gives_no_verdict_with_fewer_than_three_values():
    check = value_check(baseline={"drop_pct": 50, "window": "12h"})
    start = timezone.now() - timedelta(hours=1)
    assert [r.status for r in record_values(check, [1000, 1000, 10], start)] == ["ok"] * 3
    CheckRun.objects.filter(value=10).delete()
    record_values(check, [1000], start + timedelta(minutes=20))
    assert record_values(check, [10], start + timedelta(minutes=25))[0].status == "warning"


def test_resetting_the_baseline_accepts_the_new_level_and_is_logged_on_the_runs(capsys):
    check = value_check(debounce=5)  # three low runs do not change the check: no alert
    start = timezone.now() - timedelta(days=1)
    record_values(check, [3000] * 12, start)
    record_values(check, [900] * 3, start + timedelta(hours=1))
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        call_command("runchecks", "--reset-baseline", check.name)
    assert "baseline reset" in capsys.readouterr().out
    logged = CheckRun.objects.filter(check_obj=check, details__event="baseline_reset").get()
    assert logged.message.startswith("Baseline reset by runchecks --reset-baseline")
    check.refresh_from_db()
    after = record_values(check, [900] * 14, start + timedelta(hours=3))
    # The new level needs a full window before it judges, and it judges 900 as normal.
    assert {r.status for r in after} == {"ok"}
    assert after[-1].details["baseline"] == 900


def test_resetting_the_baseline_of_a_check_with_an_open_alert_notes_it_on_the_alert(
    admin_client,
):
    check = value_check()
    start = timezone.now() - timedelta(days=1)
    record_values(check, [3000] * 12 + [900], start)
    alert = Alert.objects.get(check_obj=check, status="open")
    response = admin_client.post(
        "/admin/monitoring/check/",
        {"action": "reset_baseline", "_selected_action": [check.pk]},
    )
    assert response.status_code == 302
    note = AlertEvent.objects.filter(alert=alert, kind="note").get()
    assert note.actor == "admin" and "Baseline reset by admin" in note.message
    check.refresh_from_db()
    assert check.baseline_since is not None
    assert not CheckRun.objects.filter(details__event="baseline_reset").exists()


def test_reset_baseline_refuses_an_unknown_check_or_one_without_a_rule():
    Check.objects.create(name="plain", kind="sql_value", config={"sql": "SELECT 1"})
    with pytest.raises(Exception, match="no check named 'nope'"):
        call_command("runchecks", "--reset-baseline", "nope")
    with pytest.raises(Exception, match="has no baseline rule"):
        call_command("runchecks", "--reset-baseline", "plain")
    assert Check.objects.get(name="plain").baseline_since is None


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ("12h", None),
        (12, None),
        ("12", "written without quotes"),
        ("soon", "a time window has a unit"),
        ("10s", "from 1m to 7d"),
        (1, "from 2 to 1000"),
    ],
)
def test_baseline_windows_are_a_run_count_or_a_time_span(window, problem):
    problems = rule_problems({"drop_pct": 50, "window": window})
    if problem is None:
        assert problems == {}
    else:
        assert problem in problems["baseline.window"]


def test_a_check_file_accepts_a_time_window_and_refuses_a_bad_one():
    good = {"checks": [{"name": "c", "kind": "sql_value", "config": {"sql": "SELECT 1"}}]}
    good["checks"][0]["baseline"] = {"drop_pct": 50, "window": "12h"}
    apply_document(validate_document(good))
    assert Check.objects.get(name="c").baseline == {"drop_pct": 50, "window": "12h"}
    bad = json.loads(json.dumps(good))
    bad["checks"][0]["baseline"]["window"] = "12 parsecs"
    with pytest.raises(CheckFileError, match="baseline.window"):
        validate_document(bad)


# --- start-up grace -------------------------------------------------------------------------


def test_no_rows_is_unknown_during_the_start_up_grace_then_critical():
    check = Check.objects.create(
        name="newest-run",
        kind="freshness",
        config={"model": "monitoring.Alert", "field": "opened_at"},
        interval_seconds=300,
    )
    (result,) = run_checks([check], claim=False)
    assert result.run.status == "unknown"
    assert "no rows" in result.run.message and "start-up grace until" in result.run.message
    with time_machine.travel(check.created_at + timedelta(minutes=5, seconds=1), tick=False):
        (result,) = run_checks([check], claim=False)
    assert result.run.status == "critical"
    assert not Alert.objects.filter(
        check_obj=check, opened_at__lt=check.created_at + timedelta(minutes=5)
    ).exists()


def test_a_zero_count_is_no_data_during_the_grace_and_the_grace_is_configurable():
    document = {
        "checks": [
            {
                "name": "events-last-hour",
                "kind": "sql_value",
                "config": {"sql": "SELECT 0"},
                "interval": "1m",
                "startup_grace": "10m",
                "direction": "below",
                "warn": 30,
                "crit": 1,
            }
        ]
    }
    apply_document(validate_document(document))
    check = Check.objects.get()
    assert check.startup_grace_seconds == 600
    with time_machine.travel(check.created_at + timedelta(minutes=9), tick=False):
        assert run_checks([check], claim=False)[0].run.status == "unknown"
    with time_machine.travel(check.created_at + timedelta(minutes=10), tick=False):
        run = run_checks([check], claim=False)[0].run
    assert run.status == "critical"
    assert "below critical threshold 1" in run.message


def test_an_error_is_not_covered_by_the_grace():
    check = Check.objects.create(
        name="broken", kind="sql_value", config={"sql": "SELECT * FROM no_such_table"}
    )
    assert run_checks([check], claim=False)[0].run.status == "critical"


@pytest.fixture
def site(live_server, settings):
    settings.SITE_URL = live_server.url
    return live_server


def test_a_fresh_install_raises_no_alert_in_its_first_two_scheduled_passes(site, qcluster):
    """Acceptance 4: bootstrap with the demo checks, then two scheduled passes: no alert."""
    call_command("bootstrap", "--demo")
    # `make run` starts the worker with the web server; its first pass finds it alive.
    wait_for(lambda: (read_queue().clusters_alive or 0) >= 1, 30, "the qcluster to report in")
    assert Check.objects.filter(name="console-runs-fresh").exists()
    start = timezone.now()
    statuses = {}
    for minute in (0, 1):
        with time_machine.travel(start + timedelta(minutes=minute, seconds=1), tick=False):
            results = run_due_checks()
        assert results, "the demo checks were due"
        statuses.update({r.check.name: (r.run.status, r.run.message) for r in results})
    assert not Alert.objects.exists(), list(Alert.objects.values_list("title", "message"))
    assert statuses["console-runs-fresh"][0] == "unknown"
    assert "start-up grace" in statuses["console-runs-last-hour"][1]


# --- mutes -----------------------------------------------------------------------------------


def test_a_mute_set_on_the_check_page_shows_its_expiry_and_unmute_ends_it(admin_client):
    check = Check.objects.create(name="api", kind="http", config={"url": "http://127.0.0.1:9/"})
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        response = admin_client.post(f"/checks/{check.pk}/mute/", {"duration": "4h"})
        assert response.status_code == 302
        page = admin_client.get(f"/checks/{check.pk}/").content.decode()
    window = MaintenanceWindow.objects.get()
    assert window.source == WindowSource.PAGE and window.created_by == "admin"
    assert window.ends_at == now + timedelta(hours=4)
    assert 'id="unmute"' in page and 'id="mute"' not in page
    assert f"{window.ends_at:%Y-%m-%d %H:%M} UTC" in page and "admin on this page" in page

    with time_machine.travel(now + timedelta(minutes=5), tick=False):
        admin_client.post(f"/checks/{check.pk}/unmute/")
        page = admin_client.get(f"/checks/{check.pk}/").content.decode()
    window.refresh_from_db()
    assert window.ends_at == now + timedelta(minutes=5)
    assert 'id="mute"' in page and 'id="muted-until"' not in page


def test_a_mute_for_an_unoffered_time_is_refused_and_mutes_nothing(admin_client):
    check = Check.objects.create(name="api", kind="http", config={"url": "http://127.0.0.1:9/"})
    response = admin_client.post(f"/checks/{check.pk}/mute/", {"duration": "forever"}, follow=True)
    assert "Choose one of 15m, 1h, 4h, 24h, 7d; not muted." in response.content.decode()
    assert not MaintenanceWindow.objects.exists()


def test_page_mutes_and_check_file_windows_are_told_apart():
    check = Check.objects.create(name="api", kind="http", config={"url": "http://127.0.0.1:9/"})
    now = timezone.now()
    common = {"check_obj": check, "starts_at": now, "ends_at": now + timedelta(hours=1)}
    mute = MaintenanceWindow.objects.create(name="mute api", source=WindowSource.PAGE, **common)
    planned = MaintenanceWindow.objects.create(name="db upgrade", **common)
    assert list(MaintenanceWindow.objects.from_file()) == [planned]
    assert list(MaintenanceWindow.objects.page_mutes()) == [mute]


def test_a_page_mute_survives_loadchecks_prune(admin_client, tmp_path):
    check = Check.objects.create(name="api", kind="http", config={"url": "http://127.0.0.1:9/"})
    admin_client.post(f"/checks/{check.pk}/mute/", {"duration": "24h"})
    path = tmp_path / "checks.yaml"
    path.write_text(
        "checks:\n  - {name: api, kind: http, config: {url: 'http://127.0.0.1:9/'}}\n"
        "maintenance: []\n"
    )
    call_command("loadchecks", str(path), "--prune")
    assert MaintenanceWindow.objects.page_mutes().filter(check_obj=check).exists()


# --- messages --------------------------------------------------------------------------------


def test_queue_findings_name_the_threshold_they_crossed():
    reading = QueueReading("orm", True, 12, 0, 18, 3, oldest_queued_seconds=700, clusters_alive=1)
    findings = dict(
        (text.split(",")[0], (level, text))
        for level, text in judge(reading, {**QUEUE_DEFAULTS}, 10, 50)
    )
    assert findings["12 tasks queued"] == ("warning", "12 tasks queued, above warning threshold 10")
    assert findings["3 failed in the last hour"][1].endswith("above warning threshold 0")
    assert findings["error rate 14.3 % of 21 tasks"][1].endswith("above critical threshold 10 %")
    assert findings["oldest queued task waiting 11m"][1].endswith("above warning threshold 10m")


def test_runchecks_prints_the_check_status_after_debounce_beside_the_run(capsys):
    check = Check.objects.create(
        name="down", kind="http", config={"url": "http://127.0.0.1:9/"}, debounce=3
    )
    call_command("runchecks", "--all")
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "CHECK", "RUN"]
    assert row.split()[:3] == ["down", "unknown", "critical"]
    assert "1 checks: 1 unknown (after debounce; 0 changed status" in out
    call_command("runchecks", "--all", "--json", "--fail-on", "critical")  # no exit: unchanged
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["status"] == "critical" and row["check_status"] == "unknown"
    check.refresh_from_db()
    assert check.status == "unknown"


# --- one failing record ----------------------------------------------------------------------


@register
class _UnstorableKind(CheckKind):
    """A kind whose details the database refuses (NaN is not JSON): recording it fails."""

    name = "test_unstorable"

    def observe(self, check, ctx):
        return Observation(value=1, message="measured", details={"ratio": float("nan")})


def test_one_failing_record_never_loses_the_pass(caplog):
    bad = Check.objects.create(name="bad", kind="test_unstorable", config={})
    good = [
        Check.objects.create(
            name=f"good-{i}", kind="sql_value", config={"sql": f"SELECT {i}"}, interval_seconds=60
        )
        for i in range(3)
    ]
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        results = run_due_checks()
    by_name = {r.check.name: r for r in results}
    assert by_name["bad"].run is None and "not recorded" in by_name["bad"].error
    assert all(by_name[c.name].run is not None for c in good)
    assert CheckRun.objects.filter(check_obj__in=good).count() == 3
    assert not CheckRun.objects.filter(check_obj=bad).exists()
    failure = [r for r in caplog.records if "recording the run of bad failed" in r.getMessage()]
    assert failure and failure[0].check == "bad"
    # Retried at its next slot, not before.
    bad.refresh_from_db()
    assert bad.next_run_at > now
    with time_machine.travel(bad.next_run_at, tick=False):
        assert "bad" in {r.check.name for r in run_due_checks()}


# --- stalled scheduler -------------------------------------------------------------------------


def test_heartbeat_pings_do_not_hide_a_stalled_scheduler(client, staff_client):
    """Acceptance 5: a heartbeat pinged every minute while no scheduled pass runs for two
    intervals: the stalled alert opens, and /api/status and /metrics say so."""
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        Check.objects.create(
            name="api", kind="sql_value", config={"sql": "SELECT 5"}, interval_seconds=60
        )
        cron = Check.objects.create(
            name="cron", kind="heartbeat", config={"period": 60, "grace": 60}
        )
        run_due_checks()  # the last scheduled pass
    for minute in range(1, 4):
        with time_machine.travel(start + timedelta(minutes=minute), tick=False):
            assert client.get(f"/ping/{cron.ping_uuid}").status_code == 200
            reading = read_scheduler()
            if minute < 2:
                assert not reading.stalled
    assert reading.stalled and reading.age_seconds == 180
    with time_machine.travel(start + timedelta(minutes=3), tick=False):
        response = staff_client.get("/api/status")
        assert response.status_code == 503 and response.json()["failing"] == ["scheduler"]
        metrics = staff_client.get("/metrics").content.decode()
    assert "opsconsole_monitoring_stalled 1.0" in metrics
    alert = Alert.objects.get(dedup_key=DEDUP_KEY)
    assert alert.status == "open" and "heartbeat pings do not count" in alert.message


def test_the_stalled_alert_resolves_when_the_scheduled_pass_runs_again():
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        Check.objects.create(name="api", kind="sql_value", config={"sql": "SELECT 5"})
        run_due_checks()
    with time_machine.travel(start + timedelta(minutes=2, seconds=1), tick=False):
        assert check_monitoring_stalled().stalled
        run_due_checks()  # checks run again
        assert not check_monitoring_stalled().stalled
    assert Alert.objects.get(dedup_key=DEDUP_KEY).status == "resolved"
