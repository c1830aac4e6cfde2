"""Login throttling: too many failed logins lock a username or an address out for a while."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from tests.conftest import screenshot

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "right-horse-battery"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    # Every attempt hashes a password (even for unknown users); the production hasher would make
    # these hundreds of attempts take minutes without testing anything more.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def oncall(django_user_model):
    return django_user_model.objects.create_user(
        "nightshift", password=PASSWORD, is_staff=True, is_superuser=True
    )


def attempt(client: Client, username: str, password: str, address: str = "127.0.0.1", **extra):
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **extra,
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def locked_out(response) -> bool:
    return (
        response.status_code == 429
        and b"failed login attempts for this username or from this address" in response.content
    )


def fail(client: Client, times: int, username: str = "nightshift", address: str = "127.0.0.1"):
    return [attempt(client, username, "wrong", address) for _ in range(times)]


def test_nine_failures_still_show_the_login_form(client, oncall):
    responses = fail(client, 9)
    assert all(r.status_code == 200 and b"Please enter the correct" in r.content for r in responses)
    assert logged_in(attempt(client, "nightshift", PASSWORD))


def test_ten_failures_for_one_username_lock_it_out_even_with_the_right_password(client, oncall):
    responses = fail(client, 10, address="10.0.0.1")
    assert locked_out(responses[-1])
    assert b"Login is locked for 15 minutes" in responses[-1].content
    # The username is locked from any address, and the right password does not help.
    refused = attempt(client, "nightshift", PASSWORD, address="10.0.0.2")
    assert locked_out(refused)
    assert "_auth_user_id" not in client.session
    # The page is the admin's own layout, not a bare text.
    assert b'id="login-locked-out"' in refused.content


def test_ten_failures_from_one_address_lock_out_every_username_from_there(
    client, oncall, django_user_model
):
    for number in range(10):
        attempt(client, f"guess{number}", "wrong", address="192.0.2.10")
    assert locked_out(attempt(client, "nightshift", PASSWORD, address="192.0.2.10"))
    assert logged_in(attempt(client, "nightshift", PASSWORD, address="192.0.2.11"))


def test_lockout_ends_after_the_cool_off(client, oncall):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        fail(client, 10)
    with time_machine.travel(start + dt.timedelta(minutes=14, seconds=50), tick=False):
        assert locked_out(attempt(client, "nightshift", PASSWORD))
    with time_machine.travel(start + dt.timedelta(minutes=15, seconds=10), tick=False):
        assert logged_in(attempt(client, "nightshift", PASSWORD))


def test_retrying_during_the_lockout_does_not_extend_it(client, oncall):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        fail(client, 10)
    with time_machine.travel(start + dt.timedelta(minutes=10), tick=False):
        assert locked_out(attempt(client, "nightshift", "wrong"))
        assert locked_out(attempt(client, "nightshift", PASSWORD))
    with time_machine.travel(start + dt.timedelta(minutes=15, seconds=10), tick=False):
        assert logged_in(attempt(client, "nightshift", PASSWORD))


def test_cool_off_and_limit_come_from_settings_when_a_login_happens(client, oncall, settings):
    settings.LOGIN_LOCKOUT_MINUTES = 2
    settings.AXES_FAILURE_LIMIT = 3
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        responses = fail(client, 3)
        assert [r.status_code for r in responses] == [200, 200, 429]
        assert b"Login is locked for 2 minutes" in responses[-1].content
    with time_machine.travel(start + dt.timedelta(minutes=2, seconds=10), tick=False):
        assert logged_in(attempt(client, "nightshift", PASSWORD))


def test_a_successful_login_resets_the_count(client, oncall):
    fail(client, 9)
    assert logged_in(attempt(client, "nightshift", PASSWORD))
    client.logout()
    responses = fail(client, 9)
    assert all(r.status_code == 200 for r in responses)
    assert logged_in(attempt(client, "nightshift", PASSWORD))


def test_a_forged_forwarded_for_header_does_not_dodge_the_address_limit(client, oncall):
    for number in range(10):
        attempt(
            client,
            f"guess{number}",
            "wrong",
            address="192.0.2.20",
            HTTP_X_FORWARDED_FOR=f"10.9.9.{number}",
        )
    assert locked_out(attempt(client, "nightshift", PASSWORD, address="192.0.2.20"))


def test_behind_the_proxy_the_address_it_appended_counts(client, oncall, settings):
    settings.BEHIND_TLS_PROXY = True
    proxy = "10.0.0.254"
    for number in range(10):
        # The client's own X-Forwarded-For entries are left of the one the proxy appended.
        attempt(
            client,
            f"guess{number}",
            "wrong",
            address=proxy,
            HTTP_X_FORWARDED_FOR=f"10.9.9.{number}, 203.0.113.9",
        )
    assert locked_out(
        attempt(client, "nightshift", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")
    )
    # Another client behind the same proxy is not locked out with the attacker.
    assert logged_in(
        attempt(client, "nightshift", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    )


def test_a_malformed_forwarded_for_behind_the_proxy_counts_as_the_proxy(client, oncall, settings):
    settings.BEHIND_TLS_PROXY = True
    responses = [
        attempt(
            client, f"guess{n}", "wrong", address="10.0.0.254", HTTP_X_FORWARDED_FOR="x, not-an-ip"
        )
        for n in range(10)
    ]
    assert [r.status_code for r in responses[:9]] == [200] * 9
    assert locked_out(responses[-1])


@pytest.mark.parametrize(
    "body",
    [
        "username=" + "a" * 5000 + "&password=x",
        "username=nul%00byte&password=x",
        "username=%ED%A0%80lone&password=%ED%A0%80",
        "username=%27%3B+DROP+TABLE+axes_accessattempt%3B+--&password=x",
        "username=oncall&username=other&password=x",
        "password=x",
    ],
)
def test_hostile_login_posts_get_the_form_back_not_an_error(client, oncall, body):
    response = client.post(LOGIN, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert logged_in(attempt(client, "nightshift", PASSWORD))


def test_api_keys_and_existing_sessions_keep_working_during_a_lockout(
    oncall, api_key_factory, staff_client
):
    attacker = Client()
    fail(attacker, 10)
    assert locked_out(attempt(attacker, "nightshift", PASSWORD))
    key = api_key_factory("read")
    assert Client().get("/api/checks/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert staff_client.get("/").status_code == 200


def test_unlock_command_lifts_a_lockout(client, oncall):
    fail(client, 10)
    call_command("axes_reset_username", "nightshift")
    assert logged_in(attempt(client, "nightshift", PASSWORD))


# --- the real login form in Chromium ------------------------------------------------------


@pytest.mark.browser
def test_admin_login_form_locks_out_after_ten_failures(page, live_server, oncall):
    page.goto("/admin/login/?next=/admin/")
    for _ in range(9):
        page.fill("#id_username", "nightshift")
        page.fill("#id_password", "wrong")
        page.click("input[type=submit]")
        page.wait_for_selector("p.errornote")
        assert "Please enter the correct" in page.inner_text("p.errornote")
    page.fill("#id_username", "nightshift")
    page.fill("#id_password", "wrong")
    with page.expect_response(re.compile(r"/admin/login/")) as tenth:
        page.click("input[type=submit]")
    assert tenth.value.status == 429
    message = page.inner_text("#login-locked-out")
    assert "Login is locked for 15 minutes" in message
    screenshot(page, "login-locked-out")

    # The right password is refused too while the lockout lasts.
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "nightshift")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#login-locked-out")
    assert page.url.endswith("/admin/login/?next=/admin/")


@pytest.mark.browser
def test_logging_in_many_times_through_the_form_never_locks_out(page, live_server, oncall):
    for _ in range(12):
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", "nightshift")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        page.context.clear_cookies()
