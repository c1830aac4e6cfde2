"""The queue check against a real django-q2 setup: real tasks, a real qcluster process.

The SQLite run uses django-q2's ORM broker; the PostgreSQL run (REDIS_URL set) the Redis broker.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django_q.brokers import get_broker
from django_q.models import Task
from django_q.tasks import async_task

from monitoring.checks.runner import run_checks
from monitoring.kinds import get_kind
from monitoring.models import Check, CheckRun
from monitoring.observability.readings import clusters_alive
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def empty_queue():
    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def queue_check(**config) -> Check:
    return Check.objects.create(
        name="task-queue", kind="queue", config=get_kind("queue").validate_config(config)
    )


def run(check: Check) -> CheckRun:
    [result] = run_checks([check], claim=False)
    return result.run


def test_queued_tasks_above_the_thresholds():
    check = queue_check(min_clusters=0)
    for _ in range(11):
        async_task("math.floor", 1.5)
    result = run(check)
    assert (result.status, result.value) == ("warning", 11)
    assert result.message.startswith("11 tasks queued")
    for _ in range(40):
        async_task("math.floor", 1.5)
    result = run(check)
    assert (result.status, result.value) == ("critical", 51)
    assert result.details["queued"] == 51


def test_a_task_waiting_over_ten_minutes_is_a_warning():
    check = queue_check(min_clusters=0)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with time_machine.travel(t0, tick=False):
        async_task("math.floor", 1.5)
        assert run(check).status == "ok"
    with time_machine.travel(t0 + timedelta(minutes=11), tick=False):
        result = run(check)
    assert result.status == "warning"
    assert "oldest queued task waiting 11m" in result.message


def test_failures_error_rate_and_a_stalled_queue_with_a_real_cluster(qcluster):
    check = queue_check()
    wait_for(lambda: clusters_alive(get_broker())[0] >= 1, 30, "the qcluster to report alive")

    # Two failures in the last hour: a warning (1-5), and too few tasks to judge the rate.
    async_task("math.sqrt", -1)
    async_task("math.sqrt", -1)
    wait_for(lambda: Task.objects.count() == 2, 30, "2 tasks to finish")
    result = run(check)
    assert result.status == "warning", result.message
    assert result.message.startswith("2 failed in the last hour")
    assert result.details["clusters_alive"] == 1
    assert result.details["broker"].startswith(
        "Redis" if settings.Q_CLUSTER.get("redis") else "ORM"
    )

    # Enough tasks to judge the error rate: 3 of 21 failed is 14 %, over the 10 % limit.
    for _ in range(18):
        async_task("math.floor", 1.5)
    async_task("math.sqrt", -1)
    wait_for(lambda: Task.objects.count() == 21, 60, "21 tasks to finish")
    result = run(check)
    assert result.status == "critical", result.message
    assert "error rate 14.3 % of 21 tasks" in result.message
    assert "3 failed in the last hour" in result.message

    # The cluster stops: work piles up and nothing takes it.
    qcluster.stop()
    async_task("math.floor", 1.5)
    wait_for(lambda: clusters_alive(get_broker())[0] == 0, 15, "the cluster to be gone")
    result = run(check)
    assert result.status == "critical"
    assert result.message.startswith("no cluster alive (0 of 1 expected): the queue is stalled")
    assert result.details["queued"] == 1


def test_no_cluster_alive_is_critical_even_with_an_empty_queue():
    result = run(queue_check())
    assert result.status == "critical"
    assert "no cluster alive" in result.message


def test_queue_config_is_validated():
    from monitoring.kinds import ConfigError

    with pytest.raises(ConfigError) as error:
        get_kind("queue").validate_config(
            {"failures_warn": -1, "oldest_warn": "soon", "error_rate_crit": 150}
        )
    assert set(error.value.errors) == {
        "config.failures_warn",
        "config.oldest_warn",
        "config.error_rate_crit",
    }
