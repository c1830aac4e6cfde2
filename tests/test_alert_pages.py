"""Alert pages and forms: access control, CSRF, actions, signed acknowledge links, and the
end-to-end browser flow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import signing
from django.test import Client

from monitoring.alerts.lifecycle import raise_alert
from monitoring.alerts.tokens import SALT, make_token
from monitoring.kinds import Observation
from monitoring.models import Alert, AlertEvent, AlertSeverity, Check
from tests.conftest import screenshot

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def failing_alert(name: str = "api-health", status: str = "critical") -> Alert:
    check = Check.objects.create(
        name=name, kind="http", component="api", config={"url": "http://127.0.0.1:9/"}
    )
    check.record(Observation(status=status, message="HTTP 503 from /health"), duration_ms=35)
    return Alert.objects.get(check_obj=check)


def form_urls(alert: Alert) -> list[str]:
    return [
        f"/alerts/{alert.pk}/{action}/" for action in ("acknowledge", "resolve", "snooze", "note")
    ]


def unchanged(alert: Alert) -> bool:
    fresh = Alert.objects.get(pk=alert.pk)
    return (
        fresh.status == "open"
        and fresh.snoozed_until is None
        and not fresh.events.exclude(kind="opened").exists()
    )


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login_from_every_page_and_form(client):
    alert = failing_alert()
    for url in ["/alerts/", f"/alerts/{alert.pk}/", "/alerts/?status=open"]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/admin/login/?next="), url
    for url in form_urls(alert):
        response = client.post(url, {"duration": "1h", "text": "x"})
        assert response.status_code == 302 and response.url.startswith("/admin/login/?next="), url
    assert unchanged(alert)


@pytest.mark.django_db
def test_non_staff_users_get_403_on_pages_and_forms(plain_user_client):
    alert = failing_alert()
    assert plain_user_client.get("/alerts/").status_code == 403
    assert plain_user_client.get(f"/alerts/{alert.pk}/").status_code == 403
    for url in form_urls(alert):
        assert plain_user_client.post(url, {"duration": "1h", "text": "x"}).status_code == 403
    assert unchanged(alert)


@pytest.mark.django_db
def test_form_post_without_csrf_token_is_refused(staff_user):
    alert = failing_alert()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    for url in form_urls(alert):
        assert strict.post(url, {"duration": "1h", "text": "x"}).status_code == 403
    assert unchanged(alert)
    page = strict.get(f"/alerts/{alert.pk}/")
    token = page.cookies["csrftoken"].value
    assert (
        strict.post(f"/alerts/{alert.pk}/acknowledge/", {"csrfmiddlewaretoken": token}).status_code
        == 302
    )
    assert Alert.objects.get(pk=alert.pk).status == "acknowledged"


@pytest.mark.django_db
def test_alert_list_shows_open_first_and_filters_by_status_and_severity(staff_client):
    resolved = failing_alert("old-check")
    resolved.resolve("oncall")
    warning = failing_alert("slow-check", status="warning")
    critical = failing_alert("down-check")
    page = staff_client.get("/alerts/").content.decode()
    assert page.index("down-check is critical") < page.index("old-check is critical")
    assert page.index("slow-check is warning") < page.index("old-check is critical")
    only_resolved = staff_client.get("/alerts/?status=resolved").content.decode()
    assert "old-check" in only_resolved and "down-check" not in only_resolved
    only_warning = staff_client.get("/alerts/?severity=warning").content.decode()
    assert "slow-check" in only_warning and "down-check" not in only_warning
    assert warning.pk and critical.pk


@pytest.mark.django_db
def test_staff_can_note_snooze_acknowledge_and_resolve_with_a_timeline(staff_client):
    alert = failing_alert()
    detail = staff_client.get(f"/alerts/{alert.pk}/").content.decode()
    for heading in (
        "Severity: CRITICAL",
        "Component: api",
        "Recent Logs:",
        "Next Steps:",
        "HTTP 503 from /health",
    ):
        assert heading in detail
    staff_client.post(f"/alerts/{alert.pk}/note/", {"text": "restarted api pods, no change"})
    bad = staff_client.post(f"/alerts/{alert.pk}/snooze/", {"duration": "10m"}, follow=True)
    assert "Not snoozed" in bad.content.decode()
    staff_client.post(f"/alerts/{alert.pk}/snooze/", {"duration": "2h"})
    staff_client.post(f"/alerts/{alert.pk}/acknowledge/")
    staff_client.post(f"/alerts/{alert.pk}/resolve/")
    alert.refresh_from_db()
    assert (
        alert.status == "resolved"
        and alert.acknowledged_by == "oncall"
        and alert.resolved_by == "oncall"
    )
    kinds = list(alert.events.values_list("kind", "actor"))
    assert kinds == [
        ("opened", "system"),
        ("note", "oncall"),
        ("snoozed", "oncall"),
        ("acknowledged", "oncall"),
        ("resolved", "oncall"),
    ]
    detail = staff_client.get(f"/alerts/{alert.pk}/").content.decode()
    assert "restarted api pods, no change" in detail.split("Attempted Fixes:")[1]


@pytest.mark.django_db
def test_signed_link_acknowledges_once_and_refuses_reuse_expiry_and_tampering(client):
    with time_machine.travel(T0, tick=False) as clock:
        alert = raise_alert("disk:db1", AlertSeverity.CRITICAL, "disk 95% on db1")
        token = make_token(alert)
        confirm = client.get(f"/ack/{token}/")
        assert confirm.status_code == 200 and "Acknowledge this alert" in confirm.content.decode()
        assert (
            Alert.objects.get(pk=alert.pk).status == "open"
        )  # a GET (mail scanner) changes nothing

        done = client.post(f"/ack/{token}/")
        assert done.status_code == 200 and "Acknowledged alert" in done.content.decode()
        alert.refresh_from_db()
        assert (alert.status, alert.acknowledged_by) == ("acknowledged", "link")
        events_after_first_use = AlertEvent.objects.count()

        again = client.post(f"/ack/{token}/")
        assert again.status_code == 410 and "already been used" in again.content.decode()
        assert client.get(f"/ack/{token}/").status_code == 410

        other = raise_alert("disk:db2", AlertSeverity.CRITICAL, "disk 95% on db2")
        old_token = make_token(other)
        tampered = old_token[:-3] + ("aaa" if not old_token.endswith("aaa") else "bbb")
        bad = client.post(f"/ack/{tampered}/")
        assert bad.status_code == 400 and "not valid" in bad.content.decode()
        # Correctly signed but binding one alert's nonce to another alert.
        forged = signing.dumps({"a": other.pk, "n": alert.ack_nonce}, salt=SALT, compress=True)
        assert client.post(f"/ack/{forged}/").status_code == 400

        clock.move_to(T0 + timedelta(hours=24, minutes=1))
        expired = client.post(f"/ack/{old_token}/")
        assert expired.status_code == 410 and "expired" in expired.content.decode()
    assert Alert.objects.get(pk=other.pk).status == "open"
    assert AlertEvent.objects.count() == events_after_first_use + 1  # only db2's "opened"


@pytest.mark.browser
def test_browser_acknowledges_an_open_alert_and_shows_the_timeline(logged_in_page):
    page = logged_in_page
    alert = failing_alert()
    page.goto("/alerts/")
    page.click(f"text={alert.title}")
    page.wait_for_url(f"**/alerts/{alert.pk}/")
    assert page.inner_text("#alert-status") == "open"
    page.click("#acknowledge")
    page.wait_for_url(f"**/alerts/{alert.pk}/")
    assert page.inner_text("#alert-status") == "acknowledged"
    assert "by oncall" in page.inner_text("#alert-state")
    row = page.locator("#timeline tr.event-acknowledged")
    assert row.count() == 1 and "oncall" in row.inner_text()
    screenshot(page, "alert-acknowledged")
    assert Alert.objects.get(pk=alert.pk).acknowledged_by == "oncall"


@pytest.mark.django_db
def test_forms_return_to_a_local_next_page_only(staff_client):
    first, second = failing_alert("a-check"), failing_alert("b-check")
    local = staff_client.post(f"/alerts/{first.pk}/acknowledge/", {"next": "/"})
    assert local.url == "/"
    foreign = staff_client.post(
        f"/alerts/{second.pk}/acknowledge/", {"next": "https://evil.example/"}
    )
    assert foreign.url == f"/alerts/{second.pk}/"


@pytest.mark.django_db
def test_admin_lists_alert_tables_and_acknowledges_and_resolves_by_action(staff_client):
    first, second = failing_alert("a-check"), failing_alert("b-check")
    for model in (
        "alert",
        "alertevent",
        "notification",
        "notificationchannel",
        "escalationpolicy",
        "maintenancewindow",
    ):
        assert staff_client.get(f"/admin/monitoring/{model}/").status_code == 200, model
    assert staff_client.get(f"/admin/monitoring/alert/{first.pk}/change/").status_code == 200
    staff_client.post(
        "/admin/monitoring/alert/",
        {
            "action": "acknowledge_selected",
            "_selected_action": [first.pk],
        },
    )
    staff_client.post(
        "/admin/monitoring/alert/",
        {
            "action": "resolve_selected",
            "_selected_action": [second.pk],
        },
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.acknowledged_by) == ("acknowledged", "oncall")
    assert (second.status, second.resolved_by) == ("resolved", "oncall")
