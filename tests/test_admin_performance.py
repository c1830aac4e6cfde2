"""Admin changelists of the big tables stay bounded: no unbounded COUNT(*), the same number of
queries whatever the row count, ordering that an index serves, and no query per row."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.models import Check, CheckRun
from opsconsole.admin_utils import EstimatedCountPaginator, LargeTableAdminMixin

pytestmark = pytest.mark.django_db

COUNT = re.compile(r"\bCOUNT\(", re.IGNORECASE)


def make_runs(n: int) -> None:
    checks = [
        Check.objects.get_or_create(name=f"check-{i}", defaults={"kind": "http"})[0]
        for i in range(3)
    ]
    start = timezone.now() - timedelta(days=1)
    CheckRun.objects.bulk_create(
        CheckRun(
            check_obj=checks[i % 3],
            status="critical" if i % 4 == 0 else "ok",
            value=i,
            created_at=start + timedelta(seconds=i),
        )
        for i in range(n)
    )


def make_alert_events(n: int) -> None:
    from monitoring.models import Alert, AlertEvent

    alerts = [
        Alert.objects.create(dedup_key=f"k{time_ns()}-{i}", title=f"a{i}", severity="warning")
        for i in range(3)
    ]
    AlertEvent.objects.bulk_create(
        AlertEvent(alert=alerts[i % 3], kind="note", actor="x", message=f"m{i}") for i in range(n)
    )


def make_batch_items(n: int) -> None:
    from batches.models import BatchItem, BatchOperation

    ops = [
        BatchOperation.objects.create(operation="http", creator="c", total_items=n)
        for _ in range(3)
    ]
    BatchItem.objects.bulk_create(
        BatchItem(
            batch=ops[i % 3], key=f"{time_ns()}-{i}", status="failed" if i % 4 == 0 else "succeeded"
        )
        for i in range(n)
    )


def make_backlog_entries(n: int) -> None:
    from backlog.models import BacklogEntry

    BacklogEntry.objects.bulk_create(
        BacklogEntry(
            source="s", key=f"{time_ns()}-{i}", status="failed" if i % 4 == 0 else "processed"
        )
        for i in range(n)
    )


def time_ns() -> int:
    import time

    return time.monotonic_ns()


TABLES: list[tuple[str, str, Callable[[int], None], str]] = [
    ("monitoring", "checkrun", make_runs, "status__exact=critical"),
    ("monitoring", "alertevent", make_alert_events, "kind__exact=note"),
    ("batches", "batchitem", make_batch_items, "status__exact=failed"),
    ("backlog", "backlogentry", make_backlog_entries, "status__exact=failed"),
]


def registered_admin(app: str, model: str):
    for model_class, model_admin in admin.site._registry.items():
        if model_class._meta.app_label == app and model_class._meta.model_name == model:
            return model_admin
    pytest.fail(f"{app}.{model} has no admin")


def changelist_queries(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return [q["sql"] for q in ctx.captured_queries]


def assert_no_unbounded_count(queries: list[str]) -> None:
    for sql in queries:
        if COUNT.search(sql):
            assert "LIMIT" in sql.upper(), f"unbounded count: {sql}"


@pytest.mark.parametrize(
    ("app", "model", "make", "filter_query"), TABLES, ids=[f"{a}.{m}" for a, m, _, _ in TABLES]
)
def test_big_table_changelist_is_bounded_and_constant(
    staff_client, app, model, make, filter_query, django_assert_max_num_queries
):
    model_admin = registered_admin(app, model)
    assert isinstance(model_admin, LargeTableAdminMixin), (
        f"{model} admin must use LargeTableAdminMixin"
    )
    url = f"/admin/{app}/{model}/"
    make(5)
    small = changelist_queries(staff_client, url)
    make(150)  # more than a page: the page still costs the same
    large = changelist_queries(staff_client, url)
    assert len(large) == len(small), "\n".join(large)
    assert_no_unbounded_count(large)
    filtered_url = f"{url}?{filter_query}"
    filtered = changelist_queries(staff_client, filtered_url)
    assert_no_unbounded_count(filtered)
    with django_assert_max_num_queries(len(large) + 2):
        staff_client.get(filtered_url)


def test_checkrun_changelist_ignores_sorting_by_unindexed_columns(staff_client):
    make_runs(60)
    queries = changelist_queries(staff_client, "/admin/monitoring/checkrun/?o=3")
    page_query = [q for q in queries if "monitoring_checkrun" in q and "ORDER BY" in q][-1]
    assert re.search(
        r'ORDER BY "monitoring_checkrun"\."created_at" DESC, "monitoring_checkrun"\."id" DESC',
        page_query,
    ), page_query


def test_paginator_caps_counts_of_filtered_lists():
    make_runs(30)
    paginator = EstimatedCountPaginator(CheckRun.objects.filter(status="ok").order_by("-id"), 10)
    paginator.cap = 12
    with CaptureQueriesContext(connection) as ctx:
        assert paginator.count == 13
    assert "LIMIT" in ctx.captured_queries[0]["sql"].upper()


def test_paginator_uses_the_planner_estimate_on_postgres(needs_postgres):
    make_runs(200)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE monitoring_checkrun")
    paginator = EstimatedCountPaginator(CheckRun.objects.order_by("-id"), 50)
    paginator.cap = 100
    with CaptureQueriesContext(connection) as ctx:
        estimate = paginator.count
    assert 150 <= estimate <= 250
    assert not any(COUNT.search(q["sql"]) for q in ctx.captured_queries)
