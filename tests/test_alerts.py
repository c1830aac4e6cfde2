"""Alert lifecycle from check results, flapping, dependencies, maintenance, API, metrics and the
check-file sections."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from monitoring.alerts.escalation import escalate_pass
from monitoring.alerts.lifecycle import raise_alert
from monitoring.kinds import Observation
from monitoring.models import (
    Alert,
    AlertEvent,
    AlertSeverity,
    AlertStatus,
    Check,
    EscalationPolicy,
    MaintenanceWindow,
    Notification,
    NotificationChannel,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def make_check(name: str = "api-health", component: str = "api", **fields) -> Check:
    return Check.objects.create(
        name=name,
        kind="http",
        component=component,
        config={"url": "http://127.0.0.1:9/health"},
        **fields,
    )


def record(check: Check, status: str, message: str = "") -> None:
    check.record(
        Observation(status=status, message=message or f"probe says {status}"), duration_ms=12
    )


def webhook_channel(url: str, name: str = "oncall-webhook", **fields) -> NotificationChannel:
    return NotificationChannel.objects.create(name=name, kind="webhook", url=url, **fields)


def test_three_failing_runs_make_one_open_alert_with_three_occurrences():
    check = make_check()
    for _ in range(3):
        record(check, "warning", "latency 1200ms")
    alerts = list(Alert.objects.all())
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.status, alert.severity, alert.occurrences) == ("open", "warning", 3)
    assert alert.check_obj == check and alert.component == "api"
    assert list(alert.events.values_list("kind", flat=True)) == ["opened"]


def test_rise_to_critical_notifies_at_once_and_recovery_resolves_with_one_notice(http_server):
    receiver = http_server()
    webhook_channel(receiver.url + "/hook")
    check = make_check()
    with time_machine.travel(T0, tick=False) as clock:
        record(check, "warning")
        escalate_pass()
        assert receiver.requests == []  # WARNING waits an hour
        clock.move_to(T0 + timedelta(minutes=2))
        record(check, "critical", "HTTP 503")
        escalate_pass()
        assert len(receiver.requests) == 1
        first = receiver.requests[0].json()["alerts"][0]
        assert (first["severity"], first["event"]) == ("critical", "escalation")
        alert = Alert.objects.get()
        assert alert.severity == "critical" and alert.occurrences == 2
        assert alert.events.filter(kind="severity_changed").count() == 1

        clock.move_to(T0 + timedelta(minutes=4))
        record(check, "ok", "200 in 80ms")
        alert.refresh_from_db()
        assert alert.status == "resolved" and alert.resolved_by == "system"
        escalate_pass()
        escalate_pass()
    assert len(receiver.requests) == 2
    recovery = receiver.requests[1].json()["alerts"][0]
    assert recovery["event"] == "recovery" and recovery["status"] == "resolved"
    assert "ack_url" not in recovery


def test_problem_returning_after_resolution_opens_a_new_alert():
    check = make_check()
    record(check, "critical")
    record(check, "ok")
    record(check, "critical")
    first, second = Alert.objects.order_by("id")
    assert first.status == "resolved" and second.status == "open"
    assert second.events.filter(kind="reopened", data__previous_alert=first.pk).exists()


def test_flapping_check_raises_one_flapping_alert_instead_of_a_storm():
    check = make_check()
    for i in range(21):
        record(check, "critical" if i % 2 else "ok")
    active = Alert.objects.exclude(status=AlertStatus.RESOLVED)
    assert active.count() == 1
    flap = active.get()
    assert flap.flapping and "flapping" in flap.title
    # Before flapping was detected a few per-status alerts came and went; after it, none.
    assert Alert.objects.count() <= 5
    before = Alert.objects.count()
    for i in range(6):
        record(check, "critical" if i % 2 else "ok")
    assert Alert.objects.count() == before


def test_check_whose_dependency_is_down_records_runs_but_raises_no_alert():
    database = make_check("db", component="database")
    api = make_check("api-health", depends_on=database)
    record(database, "critical", "connection refused")
    record(api, "critical", "HTTP 502")
    record(api, "critical", "HTTP 502")
    assert api.runs.count() == 2
    assert list(Alert.objects.values_list("check_obj__name", flat=True)) == ["db"]


def test_check_in_maintenance_window_records_runs_and_sends_nothing(http_server, mailoutbox):
    receiver = http_server()
    webhook_channel(receiver.url)
    NotificationChannel.objects.create(name="mail", kind="email", recipients="ops@example.com")
    check = make_check()
    other = make_check("queue", component="queue")
    with time_machine.travel(T0, tick=False) as clock:
        MaintenanceWindow.objects.create(
            name="upgrade",
            check_obj=check,
            starts_at=T0 - timedelta(minutes=5),
            ends_at=T0 + timedelta(hours=1),
        )
        MaintenanceWindow.objects.create(
            name="queue-move", component="queue", starts_at=T0, ends_at=T0 + timedelta(hours=1)
        )
        for minute in range(3):
            clock.move_to(T0 + timedelta(minutes=minute))
            record(check, "critical")
            record(other, "critical")
            result = escalate_pass()
        assert result.muted_alerts == 2
        assert check.runs.count() == 3
        assert receiver.requests == [] and mailoutbox == []
        clock.move_to(T0 + timedelta(hours=1, minutes=1))
        escalate_pass()
    # Still failing after the window: escalation goes on.
    assert len(receiver.requests) == 2


def test_snoozed_alert_is_muted_until_the_snooze_ends(http_server):
    receiver = http_server()
    webhook_channel(receiver.url)
    check = make_check()
    with time_machine.travel(T0, tick=False) as clock:
        record(check, "critical")
        alert = Alert.objects.get()
        alert.snooze("oncall", timedelta(minutes=30))
        escalate_pass()
        assert receiver.requests == []
        clock.move_to(T0 + timedelta(minutes=31))
        escalate_pass()
    assert len(receiver.requests) == 1
    with pytest.raises(ValueError):
        alert.snooze("oncall", timedelta(minutes=10))
    with pytest.raises(ValueError):
        alert.snooze("oncall", timedelta(hours=25))


def test_api_lists_alerts_by_status_and_acknowledges_with_a_write_key(client, api_key_factory):
    check = make_check()
    record(check, "critical", "HTTP 503")
    alert = Alert.objects.get()
    read, write = api_key_factory("read"), api_key_factory("write", name="pager")

    response = client.get("/api/alerts/?status=open", HTTP_AUTHORIZATION=f"Bearer {read}")
    assert response.status_code == 200
    (item,) = response.json()["alerts"]
    assert set(item) == {
        "id",
        "check",
        "component",
        "severity",
        "status",
        "title",
        "opened_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "occurrences",
    }
    assert (item["check"], item["status"], item["severity"]) == ("api-health", "open", "critical")

    bad = client.get("/api/alerts/?status=closed", HTTP_AUTHORIZATION=f"Bearer {read}")
    assert bad.status_code == 400 and "status" in bad.json()["details"]
    assert (
        client.post(f"/api/alerts/{alert.pk}/ack/", HTTP_AUTHORIZATION=f"Bearer {read}").status_code
        == 403
    )
    assert client.get("/api/alerts/").status_code == 401

    done = client.post(f"/api/alerts/{alert.pk}/ack/", HTTP_AUTHORIZATION=f"Bearer {write}")
    assert done.status_code == 200
    assert done.json()["alert"]["acknowledged_by"] == "api:pager"
    again = client.post(f"/api/alerts/{alert.pk}/ack/", HTTP_AUTHORIZATION=f"Bearer {write}")
    assert again.status_code == 409
    assert (
        client.post("/api/alerts/999999/ack/", HTTP_AUTHORIZATION=f"Bearer {write}").status_code
        == 404
    )
    assert AlertEvent.objects.filter(alert=alert, kind="acknowledged").count() == 1
    listed = client.get(
        "/api/alerts/?status=acknowledged", HTTP_AUTHORIZATION=f"Bearer {read}"
    ).json()
    assert [a["id"] for a in listed["alerts"]] == [alert.pk]


def test_metric_collectors_report_open_alerts_notifications_and_time_to_acknowledge(http_server):
    from opsconsole.registries import collectors

    receiver = http_server()
    webhook_channel(receiver.url)
    with time_machine.travel(T0, tick=False) as clock:
        record(make_check(), "critical")
        raise_alert("manual:1", AlertSeverity.WARNING, "disk filling")
        escalate_pass()
        clock.move_to(T0 + timedelta(minutes=3))
        Alert.objects.get(dedup_key="manual:1").acknowledge("oncall")
        families = {f.name: f for f in collectors()["alerts"](T0)}
    assert set(families) == {
        "opsconsole_alerts_open",
        "opsconsole_notifications",
        "opsconsole_alert_time_to_acknowledge_seconds",
    }
    open_samples = {
        (s.labels["severity"], s.labels["status"]): s.value
        for s in families["opsconsole_alerts_open"].samples
    }
    assert (
        open_samples[("critical", "open")] == 1 and open_samples[("warning", "acknowledged")] == 1
    )
    sent = [s for s in families["opsconsole_notifications"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in sent] == [
        ({"channel": "oncall-webhook", "outcome": "sent"}, 1),
        ({"channel": "oncall-webhook", "outcome": "failed"}, 0),  # a series from the start
    ]
    hist = {
        (s.name, s.labels.get("le")): s.value
        for s in families["opsconsole_alert_time_to_acknowledge_seconds"].samples
    }
    assert hist[("opsconsole_alert_time_to_acknowledge_seconds_bucket", "60")] == 0
    assert hist[("opsconsole_alert_time_to_acknowledge_seconds_bucket", "300")] == 1
    assert hist[("opsconsole_alert_time_to_acknowledge_seconds_sum", None)] == 180


def test_activity_source_counts_opened_and_resolved_alerts():
    from opsconsole.registries import activity_sources

    check = make_check()
    with time_machine.travel(T0, tick=False):
        record(check, "critical")
        record(check, "ok")
    counts = activity_sources()["alerts"](T0 - timedelta(minutes=1), T0 + timedelta(minutes=1))
    assert counts == {"opened": 1, "resolved": 1}


def test_loadchecks_accepts_the_design_example_file_verbatim(tmp_path):
    path = tmp_path / "checks.yaml"
    shutil.copy(ROOT / "docs" / "example-checks.yaml", path)
    call_command("loadchecks", str(path))
    channel = NotificationChannel.objects.get(name="oncall-webhook")
    assert (channel.name, channel.kind, channel.min_severity) == (
        "oncall-webhook",
        "webhook",
        "warning",
    )
    # The escalation's second step names it: the example defines it (tests/test_checkfile.py).
    assert NotificationChannel.objects.get(name="oncall-email").kind == "email"
    critical = EscalationPolicy.objects.get(severity="critical")
    assert critical.repeat_seconds == 900
    assert [(s.after_seconds, s.channels) for s in critical.steps.order_by("after_seconds")] == [
        (0, ["oncall-webhook"]),
        (1800, ["oncall-email"]),
    ]
    assert not EscalationPolicy.objects.get(severity="info").steps.exists()
    call_command("loadchecks", str(path))  # idempotent
    assert NotificationChannel.objects.count() == 2


def test_check_file_sections_validate_everything_and_write_nothing_on_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "channels:\n"
        "  - {name: hook, kind: webhook, url: ftp://x}\n"
        "  - {name: mail, kind: email}\n"
        "escalation:\n"
        "  critical: {steps: [{after: soon, channels: [hook]}], repeat: 10s}\n"
        "  urgent: {steps: []}\n"
        "maintenance:\n"
        "  - {name: w1, check: nope, start: 2026-01-01T00:00:00Z, end: 2025-01-01T00:00:00Z}\n"
    )
    with pytest.raises(CommandError) as failure:
        call_command("loadchecks", str(path))
    text = str(failure.value)
    for expected in (
        "url",
        "to:",
        "after",
        "repeat",
        "urgent",
        "no check named 'nope'",
        "end: must be after",
    ):
        assert expected in text
    assert NotificationChannel.objects.count() == 0


def test_check_file_loads_channels_maintenance_and_prunes(tmp_path):
    make_check()
    path = tmp_path / "ops.yaml"
    path.write_text(
        "channels:\n"
        "  - {name: mail, kind: email, to: [a@example.com, b@example.com],"
        " min_severity: critical}\n"
        "  - {name: chat, kind: slack, url: 'http://127.0.0.1:9/slack'}\n"
        "maintenance:\n"
        "  - {name: upgrade, check: api-health, start: '2026-03-02T08:00:00Z',"
        " end: '2026-03-02T10:00:00Z'}\n"
    )
    call_command("loadchecks", str(path))
    mail = NotificationChannel.objects.get(name="mail")
    assert mail.recipient_list() == ["a@example.com", "b@example.com"]
    assert MaintenanceWindow.objects.get().check_obj.name == "api-health"
    path.write_text(
        "channels:\n  - {name: chat, kind: slack, url: 'http://127.0.0.1:9/slack'}\n"
        "maintenance: []\n"
    )
    # A file with no checks prunes only when told that deleting every check is meant.
    call_command("loadchecks", str(path), "--prune", "--allow-empty")
    assert list(NotificationChannel.objects.values_list("name", flat=True)) == ["chat"]
    assert not MaintenanceWindow.objects.exists()
    assert not Notification.objects.exists()
