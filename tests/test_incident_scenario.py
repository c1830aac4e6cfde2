"""Acceptance (issue 14): a two-hour incident with the seed's escalation policy, played on
PostgreSQL with time moved by time-machine, two ``escalate`` passes per minute running at once,
against real loopback webhook receivers; then the same incident with no channel at all."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from monitoring.alerts.escalation import escalate_pass
from monitoring.kinds import Observation
from monitoring.models import Alert, AlertEvent, AlertStatus, Check, NotificationChannel
from tests.test_escalation import set_policy

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BATCH = [f"batch-{i}" for i in range(8)]


def two_concurrent_passes() -> None:
    """Two escalate passes at once, as two scheduler workers would run them; each thread has
    its own database connection and closes it."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        try:
            barrier.wait(timeout=10)
            escalate_pass()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def record(name: str, status: str) -> None:
    check = Check.objects.get(name=name)
    check.record(Observation(status=status, message=f"{name} {status}"), duration_ms=3)


def play_incident(client, at_minute: Callable[[int], None] | None = None, every: int = 1) -> None:
    """Two hours, a tick every ``every`` minutes: the events below, then two concurrent
    passes (every event and every step falls on a multiple of five minutes)."""
    for name in ["api", "task-queue", "search", "cache", *BATCH]:
        Check.objects.create(
            name=name, kind="http", component=name.split("-")[0], config={"url": "http://x/"}
        )
    events: dict[int, Callable[[], None]] = {
        0: lambda: (record("api", "critical"), record("task-queue", "warning")),
        5: lambda: (record("search", "critical"), record("cache", "critical")),
        10: lambda: Alert.objects.get(title="task-queue is warning").acknowledge("alice"),
        20: lambda: record("task-queue", "critical"),
        25: lambda: Check.objects.get(name="search").delete(),
        40: lambda: client.post(
            "/admin/monitoring/check/",
            {"action": "disable", "_selected_action": [Check.objects.get(name="cache").pk]},
        ),
        50: lambda: record("api", "ok"),
        55: lambda: record("task-queue", "ok"),
        60: lambda: [record(name, "critical") for name in BATCH],
        100: lambda: [record(name, "ok") for name in BATCH],
    }
    with time_machine.travel(T0, tick=False) as clock:
        for minute in range(0, 121, every):
            clock.move_to(T0 + timedelta(minutes=minute))
            if minute in events:
                events[minute]()
            two_concurrent_passes()
            if at_minute:
                at_minute(minute)


def first_line(body: dict) -> str:
    return body["text"].splitlines()[0]


@pytest.mark.django_db(transaction=True)
def test_two_hour_incident_sends_exactly_the_expected_messages(
    needs_postgres, http_server, admin_user, client
):
    oncall, wider = http_server(), http_server()
    NotificationChannel.objects.create(name="oncall", kind="webhook", url=oncall.url)
    NotificationChannel.objects.create(
        name="wider", kind="webhook", url=wider.url, min_severity="critical"
    )
    # The seed's policy: CRITICAL at once, wider after 30 min, reminders every 15 min;
    # WARNING after 1 h.
    set_policy("critical", [(0, ["oncall"]), (1800, ["wider"])], repeat=900)
    set_policy("warning", [(3600, ["oncall"])])
    client.force_login(admin_user)
    received: list[tuple[int, str, str]] = []
    seen = {"oncall": 0, "wider": 0}

    def collect(minute: int) -> None:
        for name, server in (("oncall", oncall), ("wider", wider)):
            for request in server.requests[seen[name] :]:
                received.append((minute, name, first_line(request.json())))
            seen[name] = len(server.requests)

    play_incident(client, collect)
    got = sorted(received)
    c, r = "[CRITICAL]", "[REMINDER CRITICAL]"
    expected = sorted(
        [
            (0, "oncall", f"{c} api is critical"),
            (5, "oncall", f"{c} search is critical"),
            (5, "oncall", f"{c} cache is critical"),
            (15, "oncall", f"{r} api is critical"),
            (20, "oncall", f"{r} search is critical"),
            (20, "oncall", f"{r} cache is critical"),
            # acknowledged as a warning, rose to critical: paged at once
            (20, "oncall", f"{c} task-queue is critical"),
            # deleted: resolved with a notice to whoever was told, then silence
            (25, "oncall", "[RESOLVED] search is critical (after 20m)"),
            (30, "oncall", f"{r} api is critical"),
            (30, "wider", f"{c} api is critical"),
            (35, "oncall", f"{r} cache is critical"),
            (35, "wider", f"{c} cache is critical"),
            (35, "oncall", f"{r} task-queue is critical"),
            # disabled in the admin: the same
            (40, "oncall", "[RESOLVED] cache is critical (after 35m)"),
            (40, "wider", "[RESOLVED] cache is critical (after 35m)"),
            (45, "oncall", f"{r} api is critical"),
            (45, "wider", f"{r} api is critical"),
            (50, "oncall", "[RESOLVED] api is critical (after 50m)"),
            (50, "wider", "[RESOLVED] api is critical (after 50m)"),
            (50, "oncall", f"{r} task-queue is critical"),
            (50, "wider", f"{c} task-queue is critical"),
            (55, "oncall", "[RESOLVED] task-queue is critical (after 55m)"),
            (55, "wider", "[RESOLVED] task-queue is critical (after 55m)"),
            # eight at once: one grouped message per channel
            (60, "oncall", "[Ops Console] 8 alerts: 8 critical"),
            (75, "oncall", "[Ops Console] 8 alerts: 8 critical"),
            (90, "oncall", "[Ops Console] 8 alerts: 8 critical"),
            (90, "wider", "[Ops Console] 8 alerts: 8 critical"),
            (100, "oncall", "[Ops Console] 8 alerts: 8 resolved"),
            (100, "wider", "[Ops Console] 8 alerts: 8 resolved"),
        ]
    )
    assert got == expected
    grouped = [r.json() for r in oncall.requests if r.json()["grouped"]]
    for body in grouped:
        assert sorted(a["check"] for a in body["alerts"]) == BATCH
        assert all(a["url"].endswith(f"/alerts/{a['id']}/") for a in body["alerts"])
        assert {a["severity"] for a in body["alerts"]} == {"critical"}
    rose = Alert.objects.get(dedup_key=f"check:{Check.objects.get(name='task-queue').pk}")
    assert rose.events.filter(message__contains="severity rose; acknowledgement cleared").exists()
    assert not Alert.objects.exclude(status=AlertStatus.RESOLVED).exists()
    assert AlertEvent.objects.filter(message__startswith="Check removed").count() == 1
    assert AlertEvent.objects.filter(message__startswith="Check disabled by admin").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_incident_with_no_channel_says_nobody_was_notified(
    needs_postgres, admin_user, client
):
    set_policy("critical", [(0, []), (1800, [])], repeat=900)
    set_policy("warning", [(3600, [])])
    client.force_login(admin_user)
    banners: dict[int, bool] = {}

    def look(minute: int) -> None:
        if minute in (5, 65, 115):
            banners[minute] = "nobody was notified" in client.get("/").content.decode()

    # A pass every five minutes: the timeline and the banner, not the timing, are tested here.
    play_incident(client, look, every=5)
    # While alerts are open and unheard the banner shows; once all resolved it is gone.
    assert banners == {5: True, 65: True, 115: False}
    api = Alert.objects.get(title="api is critical")
    unheard = list(api.events.filter(outcome="nobody").values_list("message", flat=True))
    assert unheard == [
        "no channel: nobody was notified (critical/0)",
        "no channel: nobody was notified (critical/1)",
    ]
    assert AlertEvent.objects.filter(outcome="nobody").count() == (
        # api, task-queue (as critical), search, cache: 0 and, past 30 min, 1; batch: 0 and 1
        2 + 2 + 1 + 2 + 8 * 2
    )
