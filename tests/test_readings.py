"""One home per reading: every screen that shows "clusters alive" and "overall state" gives
the same answer, against a real ``manage.py qcluster``.

The SQLite run uses django-q2's ORM broker (clusters found as local processes); the PostgreSQL
run (REDIS_URL set) the Redis broker (clusters found from their stats in Redis).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import StringIO

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django_q.brokers import get_broker
from prometheus_client.parser import text_string_to_metric_families

from monitoring.checks.runner import run_checks
from monitoring.kinds import get_kind
from monitoring.models import Check, Report
from monitoring.observability import snapshot
from monitoring.observability.readings import read_queue
from tests.conftest import skip_or_fail, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# The finding marks, and the Overall line's words.
HEALTH_LEVEL = {
    "OK": "ok",
    "WARN": "warning",
    "CRIT": "critical",
    "WARNING": "warning",
    "CRITICAL": "critical",
}
STATUS_OF_GAUGE = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}


@pytest.fixture(params=["orm", "redis"])
def broker_kind(request) -> str:
    """Each broker in the run that configures it: ORM on SQLite, Redis with REDIS_URL."""
    on_redis = bool(settings.Q_CLUSTER.get("redis"))
    if request.param == "orm" and on_redis:
        pytest.skip("the ORM broker runs in the SQLite run (no REDIS_URL)")
    if request.param == "redis":
        if not on_redis:
            pytest.skip("the Redis broker runs in the PostgreSQL + Redis run (REDIS_URL=...)")
        reading = read_queue()
        if not reading.reachable:
            skip_or_fail(f"the Redis broker is not answering: {reading.error}")
    return request.param


@pytest.fixture
def empty_queue() -> Iterator[None]:
    broker = get_broker()
    broker.purge_queue()
    yield
    broker.purge_queue()


def run_queue_check(check: Check) -> tuple[int, str]:
    [result] = run_checks([check], claim=False)
    return result.run.details["clusters_alive"], result.run.status


def dashboard(client) -> tuple[int, str]:
    html = client.get("/").content.decode()
    clusters = re.search(r'id="queue-clusters-alive">(\d+)<', html)
    banner = re.search(r"Overall: (\w+)", html)
    badge = re.search(r'class="overall (\w+)"', html)  # the header badge of every page
    assert clusters and banner and badge, html
    assert badge.group(1) == banner.group(1).lower()
    return int(clusters.group(1)), banner.group(1).lower()


def opsreport() -> tuple[int, str]:
    out = StringIO()
    call_command("opsreport", stdout=out)
    report = Report.objects.latest("id")
    # The operations guide's layout: the task queue's block in PROCESS STATUS says
    # "Workers: N", and the saved sections (what the report page renders) hold the same N.
    workers = re.search(
        r"task queue \(\w+ broker\)\n +Status: [\w ]+ \| Workers: (\d+) ", report.text
    )
    assert workers and workers.group(0) in out.getvalue(), out.getvalue()
    [processes] = [s for s in report.sections if s["kind"] == "processes"]
    assert int(workers.group(1)) == processes["console"]["workers"]
    assert report.title.endswith(f": {report.overall_status}")
    return processes["console"]["workers"], report.overall_status


def metrics_health() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("metrics", "health", stdout=out, stderr=out)
    except SystemExit:  # the exit code is the level, read below from the Overall line
        pass
    text = out.getvalue()
    clusters = re.search(r"\[\w+ *\] Queue clusters +(\d+) alive", text)
    checks = re.search(r"\[(\w+) *\] Checks ", text)
    overall = re.search(r"Overall: (\w+)", text)
    assert clusters and checks and overall, text
    assert HEALTH_LEVEL[checks.group(1)] == HEALTH_LEVEL[overall.group(1)], text
    return int(clusters.group(1)), HEALTH_LEVEL[overall.group(1)]


def api_status(client) -> tuple[int, str]:
    body = client.get("/api/status").json()
    return body["components"]["queue"]["clusters_alive"], body["overall"]["state"]


def prometheus(client) -> tuple[int, str]:
    snapshot.reset_local()
    caches["default"].delete(snapshot.CACHE_KEY)  # the shared copy, when REDIS_URL is set
    found = {
        s.name: s.value
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
        for s in family.samples
    }
    return int(found["opsconsole_queue_clusters_alive"]), STATUS_OF_GAUGE[
        int(found["opsconsole_overall_status"])
    ]


def every_screen(client, check: Check) -> dict[str, tuple[int, str]]:
    """(clusters alive, overall state) as each place shows it; the queue check runs first,
    as its result is part of the overall state."""
    clusters, _ = run_queue_check(check)
    check.refresh_from_db()
    return {
        "queue check": (clusters, check.status),
        "dashboard": dashboard(client),
        "opsreport": opsreport(),
        "metrics health": metrics_health(),
        "/api/status": api_status(client),
        "/metrics": prometheus(client),
    }


def test_every_screen_shows_the_same_clusters_alive_and_overall_state(
    broker_kind, empty_queue, qcluster, staff_client
):
    check = Check.objects.create(
        name="task-queue", kind="queue", config=get_kind("queue").validate_config({})
    )
    wait_for(lambda: read_queue().clusters_alive == 1, 60, "the qcluster to report alive")
    assert read_queue().broker == broker_kind

    seen = every_screen(staff_client, check)
    assert set(seen.values()) == {(1, "ok")}, seen

    # The cluster stops: every place says so, and the queue check turns the state critical.
    qcluster.stop()
    wait_for(lambda: read_queue().clusters_alive == 0, 30, "the cluster to be gone")
    seen = every_screen(staff_client, check)
    assert set(seen.values()) == {(0, "critical")}, seen
