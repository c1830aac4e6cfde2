"""Alerts you can trust (issue 14, the alert side): a check that is gone or not running stops
paging, an acknowledged alert that gets worse pages again, titles and reports follow the alert's
state, nobody-notified is visible, and the dashboard never hides the newest critical."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.admin.sites import site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory

from monitoring.alerts.escalation import escalate_pass
from monitoring.alerts.report import escalation_report, load_report_inputs
from monitoring.kinds import Observation
from monitoring.models import (
    Alert,
    AlertEvent,
    AlertStatus,
    Check,
    CheckStatus,
    Notification,
    NotificationChannel,
)
from monitoring.web.dashboard import open_alerts
from tests.test_escalation import set_policy

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_check(name: str = "task-queue", component: str = "queue") -> Check:
    return Check.objects.create(
        name=name, kind="http", component=component, config={"url": "http://127.0.0.1:9/"}
    )


def record(check: Check, status: str, message: str = "") -> None:
    check.record(Observation(status=status, message=message or status), duration_ms=5)


def webhook(http_server, name: str = "oncall", min_severity: str = "warning"):
    server = http_server()
    NotificationChannel.objects.create(
        name=name, kind="webhook", url=server.url, min_severity=min_severity
    )
    return server


def events(alert: Alert) -> list[str]:
    return list(alert.events.order_by("created_at", "id").values_list("message", flat=True))


@pytest.mark.django_db
def test_deleted_check_resolves_its_alert_with_a_notice_and_no_more_reminders(http_server):
    server = webhook(http_server)
    with time_machine.travel(T0, tick=False) as clock:
        check = make_check()
        record(check, "critical")
        escalate_pass()
        assert len(server.requests) == 1
        check.delete()
        alert = Alert.objects.get()
        assert alert.status == AlertStatus.RESOLVED
        assert "Check removed" in events(alert)[-1]
        clock.move_to(T0 + timedelta(minutes=1))
        escalate_pass()
        assert [r.json()["alerts"][0]["event"] for r in server.requests] == [
            "escalation",
            "recovery",
        ]
        for minutes in (16, 31, 46):
            clock.move_to(T0 + timedelta(minutes=minutes))
            escalate_pass()
        assert len(server.requests) == 2


@pytest.mark.django_db
def test_loadchecks_prune_resolves_alerts_of_removed_checks(tmp_path):
    keep, gone = make_check("keep"), make_check("gone")
    record(gone, "critical")
    path = tmp_path / "checks.yaml"
    path.write_text("checks:\n  - {name: keep, kind: http, config: {url: 'http://127.0.0.1:9/'}}\n")
    call_command("loadchecks", str(path), "--prune")
    assert list(Check.objects.values_list("name", flat=True)) == [keep.name]
    alert = Alert.objects.get()
    assert alert.status == AlertStatus.RESOLVED and "Check removed" in events(alert)[-1]


@pytest.mark.django_db
@pytest.mark.parametrize("content", ["", "checks: []\n", "channels: []\n"])
def test_loadchecks_prune_refuses_a_file_with_no_checks(tmp_path, content):
    make_check("keep")
    path = tmp_path / "checks.yaml"
    path.write_text(content)
    with pytest.raises(CommandError, match="no checks"):
        call_command("loadchecks", str(path), "--prune")
    assert Check.objects.count() == 1
    call_command("loadchecks", str(path), "--prune", "--allow-empty")
    assert Check.objects.count() == 0


@pytest.mark.django_db
def test_check_disabled_in_the_file_resolves_its_alert(tmp_path):
    check = make_check("gone")
    record(check, "critical")
    path = tmp_path / "checks.yaml"
    path.write_text(
        "checks:\n  - {name: gone, kind: http, component: queue, enabled: false,"
        " config: {url: 'http://127.0.0.1:9/'}}\n"
    )
    call_command("loadchecks", str(path))
    alert = Alert.objects.get()
    assert alert.status == AlertStatus.RESOLVED and "Check disabled" in events(alert)[-1]


@pytest.mark.django_db
def test_admin_disable_action_resolves_alerts_and_escalation_sends_nothing(http_server, admin_user):
    server = webhook(http_server)
    with time_machine.travel(T0, tick=False) as clock:
        check = make_check()
        record(check, "critical")
        escalate_pass()
        request = RequestFactory().post("/admin/")
        request.user = admin_user
        request._messages = _NoMessages()
        model_admin = site._registry[Check]
        model_admin.disable(request, Check.objects.filter(pk=check.pk))
        check.refresh_from_db()
        assert (check.enabled, check.status) == (False, CheckStatus.PAUSED)
        alert = Alert.objects.get()
        assert alert.status == AlertStatus.RESOLVED
        assert "Check disabled by admin" in events(alert)[-1]
        for minutes in (1, 16, 31):
            clock.move_to(T0 + timedelta(minutes=minutes))
            escalate_pass()
        assert [r.json()["alerts"][0]["event"] for r in server.requests] == [
            "escalation",
            "recovery",
        ]


class _NoMessages:
    def add(self, *args, **kwargs) -> None:
        pass


@pytest.mark.django_db
def test_escalation_plans_nothing_for_an_alert_whose_check_is_not_running(http_server):
    """The guard sits in the planning query: even an alert left open (a raw UPDATE that
    bypassed the model) is not escalated while its check is paused or gone."""
    server = webhook(http_server)
    with time_machine.travel(T0, tick=False):
        paused, gone = make_check("paused"), make_check("gone")
        record(paused, "critical")
        record(gone, "critical")
        Check.objects.filter(pk=paused.pk).update(enabled=False, status=CheckStatus.PAUSED)
        Alert.objects.filter(check_obj=gone).update(check_obj=None)
        escalate_pass()
    assert server.requests == []
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_acknowledged_warning_that_rises_to_critical_is_reopened_and_paged_at_once(
    http_server,
):
    server = webhook(http_server)
    with time_machine.travel(T0, tick=False) as clock:
        check = make_check()
        record(check, "warning")
        alert = Alert.objects.get()
        assert alert.title == "task-queue is warning"
        alert.acknowledge("alice")
        clock.move_to(T0 + timedelta(minutes=5))
        record(check, "critical")
        alert.refresh_from_db()
        assert alert.status == AlertStatus.OPEN
        assert (alert.acknowledged_by, alert.acknowledged_at) == ("", None)
        assert alert.title == "task-queue is critical"
        assert "severity rose; acknowledgement cleared" in " ".join(events(alert))
        escalate_pass()
    [sent] = server.requests
    summary = sent.json()["alerts"][0]
    assert (summary["severity"], summary["title"]) == ("critical", "task-queue is critical")
    assert "[CRITICAL] task-queue is critical" in sent.json()["text"]


@pytest.mark.django_db
def test_report_follows_the_alert_state():
    with time_machine.travel(T0, tick=False) as clock:
        check = make_check()
        record(check, "critical")
        alert = Alert.objects.get()
        inputs = load_report_inputs([alert])[alert.pk]
        assert "within 5 minutes" in escalation_report(alert, inputs)
        alert.acknowledge("alice")
        report = escalation_report(alert, inputs)
        assert "within 5 minutes" not in report
        assert "Acknowledge the alert" not in report
        assert "acknowledged by alice" in report
        clock.move_to(T0 + timedelta(minutes=42))
        record(check, "ok")
        alert.refresh_from_db()
        report = escalation_report(alert, inputs)
        assert report.startswith("RESOLVED: task-queue is critical")
        assert "Resolved after 42m" in report
        assert "Acknowledge" not in report


@pytest.mark.django_db
def test_dashboard_shows_the_newest_critical_above_many_older_warnings():
    with time_machine.travel(T0, tick=False) as clock:
        for i in range(70):
            record(make_check(f"w{i:02d}"), "warning")
        clock.move_to(T0 + timedelta(hours=1))
        record(make_check("newest"), "critical")
        shown = open_alerts()
    assert shown["total"] == 71
    assert shown["alerts"][0].title == "newest is critical"


@pytest.mark.django_db
def test_no_matching_channel_is_recorded_once_as_nobody_notified(client, admin_user):
    NotificationChannel.objects.create(
        name="crit-only", kind="webhook", url="http://127.0.0.1:9/", min_severity="critical"
    )
    set_policy("warning", [(0, [])])
    with time_machine.travel(T0, tick=False) as clock:
        record(make_check(), "warning")
        escalate_pass()
        clock.move_to(T0 + timedelta(minutes=1))
        escalate_pass()
    alert = Alert.objects.get()
    nobody = AlertEvent.objects.filter(alert=alert, outcome="nobody")
    assert [e.message for e in nobody] == ["no channel: nobody was notified (warning/0)"]
    client.force_login(admin_user)
    page = client.get("/").content.decode()
    assert "nobody was notified" in page
    out = _health()
    assert "Nobody notified" in out and "1 alert" in out


def _health() -> str:
    from io import StringIO

    out = StringIO()
    try:
        call_command("metrics", "health", stdout=out)
    except SystemExit:
        pass
    return out.getvalue()


@pytest.mark.django_db
def test_resolved_alert_shows_a_resolved_badge_not_a_red_critical(client, admin_user):
    check = make_check()
    record(check, "critical")
    record(check, "ok")
    alert = Alert.objects.get()
    client.force_login(admin_user)
    page = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert 'class="badge resolved" data-severity="critical">resolved (critical)' in page
    assert 'class="badge critical"' not in page
    listing = client.get("/alerts/?status=resolved").content.decode()
    assert 'class="badge critical"' not in listing


@pytest.mark.django_db
def test_grouped_message_keeps_every_alert_and_each_report(http_server, settings, mailoutbox):
    settings.ALERT_GROUP_THRESHOLD = 2
    server = webhook(http_server)
    NotificationChannel.objects.create(name="mail", kind="email", recipients="ops@example.com")
    with time_machine.travel(T0, tick=False):
        for i in range(3):
            record(make_check(f"db-{i}", component=f"c{i}"), "critical", f"down {i}")
        escalate_pass()
    [sent] = server.requests
    body = sent.json()
    assert body["grouped"] is True and body["count"] == 3
    assert sorted(
        (a["check"], a["severity"], a["component"], a["issue"]) for a in body["alerts"]
    ) == [(f"db-{i}", "critical", f"c{i}", f"down {i}") for i in range(3)]
    assert all(a["url"].endswith(f"/alerts/{a['id']}/") and a["duration"] for a in body["alerts"])
    [mail] = mailoutbox
    assert mail.body.count("ESCALATION: db-") == 3
    assert mail.body.count("Next Steps:") == 3


@pytest.mark.django_db
def test_send_test_notification_reports_success_and_the_error(http_server, admin_user, client):
    good = http_server()
    bad = http_server(lambda request: (500, {}, b"receiver down"))
    NotificationChannel.objects.create(name="good", kind="webhook", url=good.url)
    NotificationChannel.objects.create(name="bad", kind="webhook", url=bad.url)
    client.force_login(admin_user)
    response = client.post(
        "/admin/monitoring/notificationchannel/",
        {
            "action": "send_test_notification",
            "_selected_action": list(NotificationChannel.objects.values_list("pk", flat=True)),
        },
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert "good: test notification sent." in shown
    assert any(m.startswith("bad: test notification failed: HTTP 500") for m in shown)
    assert good.requests[0].json()["test"] is True
    check = make_check()
    record(check, "critical")
    alert = Alert.objects.get()
    for url in (f"/alerts/{alert.pk}/test-notification/", f"/checks/{check.pk}/test-notification/"):
        response = client.post(url, follow=True)
        shown = [str(m) for m in response.context["messages"]]
        assert "good: test notification sent." in shown
        assert any(m.startswith("bad: HTTP 500") for m in shown)
    page = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert 'id="test-notification"' in page
    assert 'id="test-notification"' in client.get(f"/checks/{check.pk}/").content.decode()
    NotificationChannel.objects.all().delete()
    response = client.post(f"/checks/{check.pk}/test-notification/", follow=True)
    assert "nobody would be notified" in str(list(response.context["messages"])[0])


@pytest.mark.django_db
def test_bootstrap_creates_one_default_staff_email_channel_that_logs_without_email_host(
    caplog, settings
):
    from io import StringIO

    from monitoring.alerts.delivery import send_test

    call_command("bootstrap", stdout=StringIO())
    [channel] = NotificationChannel.objects.all()
    assert (channel.name, channel.kind, channel.recipients) == ("staff-email", "email", "staff")
    call_command("bootstrap", stdout=StringIO())
    assert NotificationChannel.objects.count() == 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    with caplog.at_level("WARNING"):
        assert send_test(channel, "tester") is None
    assert "Ops Console test notification" in caplog.text


@pytest.mark.django_db
def test_staff_recipients_are_the_active_staff_users_addresses(django_user_model):
    django_user_model.objects.create_user("a", email="a@example.com", is_staff=True)
    django_user_model.objects.create_user("b", email="b@example.com", is_staff=False)
    django_user_model.objects.create_user("c", email="", is_staff=True)
    channel = NotificationChannel(name="x", kind="email", recipients="staff, ops@example.com")
    assert channel.recipient_list() == ["a@example.com", "ops@example.com"]
