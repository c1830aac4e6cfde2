"""The batches JSON API: create, read, list with keyset pagination, retry, cancel, health."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from batches.models import BatchItem, BatchOperation, BatchStatus, ItemStatus

URL = "/api/batches/"
GOOD = {
    "operation": "http",
    "creator": "team-a",
    "items": ["a", "b", 3],
    "payload": {
        "url": "https://api.example/items/{key}",
        "method": "POST",
        "body": {"id": "{key}"},
    },
}


@pytest.fixture
def write_key(api_key_factory) -> str:
    return api_key_factory("write")


@pytest.fixture
def read_key(api_key_factory) -> str:
    return api_key_factory("read")


def post(client, body, key, url=URL):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(
        url, data=raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def get(client, url, key):
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {key}")


def rows() -> tuple[int, int]:
    return BatchOperation.objects.count(), BatchItem.objects.count()


def test_create_answers_201_with_pending_batch_and_writes_items(client, write_key):
    response = post(client, GOOD, write_key)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending" and body["totalItems"] == 3
    batch = BatchOperation.objects.get(pk=body["batchId"])
    assert batch.creator == "team-a" and batch.operation == "http"
    assert batch.payload["expect_status"] == [200, 201, 202, 204]  # defaults filled in
    assert sorted(batch.items.values_list("key", flat=True)) == ["3", "a", "b"]


def test_create_needs_a_write_key(client, read_key):
    assert post(client, GOOD, read_key).status_code == 403
    assert (
        client.post(URL, data=json.dumps(GOOD), content_type="application/json").status_code == 401
    )
    assert rows() == (0, 0)


def test_reads_accept_a_read_key_or_a_staff_session(client, read_key, staff_client):
    assert get(client, URL, read_key).status_code == 200
    assert staff_client.get(URL).status_code == 200
    assert staff_client.get("/api/batches/health/").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"NaN", "body"),
        ([1, 2], "body"),
        ({**GOOD, "operation": None} | {"operation": None}, "operation"),
        ({k: v for k, v in GOOD.items() if k != "operation"}, "operation"),
        ({**GOOD, "operation": "teleport"}, "operation"),
        ({k: v for k, v in GOOD.items() if k != "creator"}, "creator"),
        ({**GOOD, "creator": "x" * 101}, "creator"),
        ({**GOOD, "creator": 5}, "creator"),
        ({**GOOD, "creator": "a\x00b"}, "creator"),
        ({**GOOD, "items": []}, "items"),
        ({**GOOD, "items": "abc"}, "items"),
        ({**GOOD, "items": ["a", 1.5]}, "items[1]"),
        ({**GOOD, "items": ["a", True]}, "items[1]"),
        ({**GOOD, "items": ["a", None]}, "items[1]"),
        ({**GOOD, "items": ["a", "b", "a"]}, "items[2]"),
        ({**GOOD, "items": [1, "1"]}, "items[1]"),
        ({**GOOD, "items": ["x" * 201]}, "items[0]"),
        ({**GOOD, "extra": 1}, "extra"),
        ({**GOOD, "payload": []}, "payload"),
        ({**GOOD, "payload": {"url": "ftp://x/{key}"}}, "payload.url"),
        ({**GOOD, "payload": {}}, "payload.url"),
        ({**GOOD, "payload": {"url": "https://x/", "method": "TRACE"}}, "payload.method"),
        ({**GOOD, "payload": {"url": "https://x/", "timeout": 0.05}}, "payload.timeout"),
        ({**GOOD, "payload": {"url": "https://x/", "timeout": 61}}, "payload.timeout"),
        ({**GOOD, "payload": {"url": "https://x/", "timeout": "10"}}, "payload.timeout"),
        (
            {**GOOD, "payload": {"url": "https://x/", "expect_status": [700]}},
            "payload.expect_status",
        ),
        ({**GOOD, "payload": {"url": "https://x/", "headers": {"a": 1}}}, "payload.headers"),
        ({**GOOD, "payload": {"url": "https://x/", "verb": "x"}}, "payload.verb"),
        ({**GOOD, "operation": "backlog", "payload": {"source": ""}}, "payload.source"),
    ],
)
def test_bad_input_is_400_with_field_details_and_writes_nothing(client, write_key, body, field):
    response = post(client, body, write_key)
    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["error"] and field in payload["details"], payload
    assert rows() == (0, 0)


def test_too_many_items_is_413(client, write_key, settings):
    settings.BATCH_OPERATION_MAX_SIZE = 5
    response = post(client, {**GOOD, "items": list(range(6))}, write_key)
    assert response.status_code == 413
    assert "BATCH_OPERATION_MAX_SIZE" in response.json()["error"]
    assert rows() == (0, 0)
    assert post(client, {**GOOD, "items": list(range(5))}, write_key).status_code == 201


def test_unknown_batch_is_404_and_wrong_method_is_405(client, read_key, write_key):
    assert get(client, f"{URL}00000000-0000-0000-0000-000000000000/", read_key).status_code == 404
    assert get(client, f"{URL}not-a-uuid/", read_key).json()["error"] == "unknown batch"
    response = client.delete(URL, HTTP_AUTHORIZATION=f"Bearer {write_key}")
    assert response.status_code == 405 and response["Allow"] == "GET, POST"
    created = post(client, GOOD, write_key).json()["batchId"]
    assert (
        client.put(f"{URL}{created}/", HTTP_AUTHORIZATION=f"Bearer {write_key}").status_code == 405
    )
    assert get(client, f"{URL}{created}/cancel/", write_key).status_code == 405
    assert (
        post(
            client, {}, write_key, url=f"{URL}00000000-0000-0000-0000-000000000000/retry/"
        ).status_code
        == 404
    )


def test_detail_shows_counts_and_pages_of_items(client, write_key, read_key):
    batch_id = post(client, {**GOOD, "items": [f"k{i}" for i in range(5)]}, write_key).json()[
        "batchId"
    ]
    BatchItem.objects.filter(batch_id=batch_id, key="k0").update(
        status=ItemStatus.SUCCEEDED, attempts=1, result={"status": 200}
    )
    BatchOperation.objects.filter(pk=batch_id).update(succeeded_items=1, status=BatchStatus.RUNNING)
    body = get(client, f"{URL}{batch_id}/?items_limit=2", read_key).json()
    for key in (
        "batchId",
        "operation",
        "creator",
        "status",
        "totalItems",
        "succeededItems",
        "failedItems",
        "pendingItems",
        "createdAt",
        "startedAt",
        "finishedAt",
        "items",
        "nextItemsCursor",
    ):
        assert key in body
    assert (body["totalItems"], body["succeededItems"], body["pendingItems"]) == (5, 1, 4)
    assert body["items"][0] == {
        "key": "k0",
        "status": "succeeded",
        "attempts": 1,
        "error": None,
        "result": {"status": 200},
    }
    keys = [i["key"] for i in body["items"]]
    cursor = body["nextItemsCursor"]
    while cursor:
        page = get(client, f"{URL}{batch_id}/?items_limit=2&items_cursor={cursor}", read_key).json()
        keys += [i["key"] for i in page["items"]]
        cursor = page["nextItemsCursor"]
    assert keys == [f"k{i}" for i in range(5)]


def test_list_filters_by_creator_and_status_and_validates_parameters(client, write_key, read_key):
    for creator in ("alice", "alice", "bob"):
        post(client, {**GOOD, "creator": creator}, write_key)
    BatchOperation.objects.filter(creator="bob").update(status=BatchStatus.COMPLETED)
    alice = get(client, f"{URL}?creator=alice", read_key).json()
    assert [b["creator"] for b in alice["batches"]] == ["alice", "alice"] and alice[
        "next_cursor"
    ] is None
    assert len(get(client, "/api/batches/creator/alice/", read_key).json()["batches"]) == 2
    done = get(client, f"{URL}?status=completed", read_key).json()["batches"]
    assert [b["creator"] for b in done] == ["bob"]
    for query, field in (
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("status=bogus", "status"),
        ("cursor=%%%", "cursor"),
    ):
        response = get(client, f"{URL}?{query}", read_key)
        assert response.status_code == 400 and field in response.json()["details"], query


def test_retry_and_cancel_endpoints(client, write_key):
    batch_id = post(client, GOOD, write_key).json()["batchId"]
    # Still running: nothing to retry.
    assert post(client, {}, write_key, url=f"{URL}{batch_id}/retry/").status_code == 409
    response = post(client, {}, write_key, url=f"{URL}{batch_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert set(BatchItem.objects.filter(batch_id=batch_id).values_list("status", flat=True)) == {
        "cancelled"
    }
    assert post(client, {}, write_key, url=f"{URL}{batch_id}/cancel/").status_code == 409

    other = post(client, GOOD, write_key).json()["batchId"]
    BatchItem.objects.filter(batch_id=other, key="a").update(
        status=ItemStatus.FAILED, error="HTTP 400"
    )
    BatchItem.objects.filter(batch_id=other).exclude(key="a").update(status=ItemStatus.SUCCEEDED)
    BatchOperation.objects.filter(pk=other).update(
        status=BatchStatus.COMPLETED_WITH_ERRORS,
        succeeded_items=2,
        failed_items=1,
        finished_at=timezone.now(),
    )
    response = post(client, {}, write_key, url=f"{URL}{other}/retry/")
    assert response.status_code == 200 and response.json()["retriedItems"] == 1
    assert response.json()["status"] == "pending" and response.json()["failedItems"] == 0


def test_turned_off_api_answers_503_and_touches_nothing(client, write_key, settings):
    settings.BATCHES_API_ENABLED = False
    for response in (
        post(client, GOOD, write_key),
        get(client, URL, write_key),
        get(client, "/api/batches/health/", write_key),
        get(client, "/api/batches/creator/x/", write_key),
    ):
        assert response.status_code == 503
        assert "BATCHES_API_ENABLED" in response.json()["error"]
    assert rows() == (0, 0)


def test_health_reports_counts_rates_and_resources(client, read_key, write_key):
    post(client, GOOD, write_key)
    body = get(client, "/api/batches/health/", read_key).json()
    assert body["batch_operations"]["total"] == 1 and body["batch_operations"]["pending"] == 1
    assert set(body["performance"]) >= {"avg_processing_time_ms", "success_rate", "failure_rate"}
    assert "batches_batchitem" in body["resources"]["table_sizes_bytes"]
    assert body["resources"]["heap_used_mb"] > 0


# --- property: no 5xx, and a 4xx writes nothing --------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
item_keys = st.one_of(
    st.text(max_size=12), st.integers(min_value=-(2**65), max_value=2**65), json_scalars
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "url": st.one_of(
                st.sampled_from(
                    ["https://x.example/{key}", "http://h/a", "ftp://h/", "nohost", ""]
                ),
                json_scalars,
            ),
            "method": st.one_of(st.sampled_from(["GET", "post", "TRACE"]), json_scalars),
            "timeout": st.one_of(st.floats(min_value=-1, max_value=100), json_scalars),
            "expect_status": st.one_of(st.lists(st.integers(0, 800), max_size=3), json_scalars),
            "headers": st.one_of(
                st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), json_scalars
            ),
            "body": json_values,
            "source": json_scalars,
            "reason": json_scalars,
        },
    ),
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "operation": st.one_of(st.sampled_from(["http", "backlog", "nope"]), json_scalars),
            "creator": st.one_of(st.text(max_size=120), json_scalars),
            "items": st.one_of(
                st.lists(item_keys, max_size=8),
                st.lists(st.integers(0, 5), max_size=120),
                json_values,
            ),
            "payload": payloads,
            "extra": json_values,
        },
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=60),
    st.text(max_size=60),
    st.sampled_from(
        [
            "NaN",
            '{"creator": Infinity}',
            "[" * 5000,
            '{"items": ["\\ud800"]}',
            '{"operation":"http","creator":"c","items":["a\\u0000"],"payload":{"url":"https://x/"}}',
        ]
    ),
)


@pytest.mark.django_db
@hsettings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(
    body=bodies,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded"]
    ),
)
def test_random_bodies_never_5xx_and_4xx_writes_nothing(client, write_key, body, content_type):
    before = rows()
    response = client.post(
        URL, data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {write_key}"
    )
    assert response.status_code < 500, (body, response.content)
    after = rows()
    if response.status_code == 201:
        assert after[0] == before[0] + 1 and after[1] == before[1] + response.json()["totalItems"]
    else:
        assert 400 <= response.status_code < 500
        assert after == before, (body, response.content)
        assert "error" in response.json()


# --- keyset pagination while batches are created -------------------------------------------------


def test_keyset_walk_returns_every_batch_once_while_batches_are_created(
    transactional_db, client, read_key
):
    base = timezone.now() - timedelta(hours=1)
    existing = [
        # Every third batch shares a timestamp with its neighbour: the id breaks the tie.
        BatchOperation(
            operation="http",
            creator="walker",
            total_items=0,
            created_at=base + timedelta(seconds=i // 3),
        )
        for i in range(90)
    ]
    BatchOperation.objects.bulk_create(existing)
    expected = {str(b.id) for b in existing}
    stop = threading.Event()
    created: list[str] = []

    def create_more() -> None:
        try:
            while not stop.is_set() and len(created) < 200:
                created.append(
                    str(BatchOperation.objects.create(operation="http", creator="walker").id)
                )
                time.sleep(0.002)
        finally:
            connection.close()

    writer = threading.Thread(target=create_more, daemon=True)
    writer.start()
    try:
        seen: list[str] = []
        url = "/api/batches/creator/walker/?limit=7"
        deadline = time.monotonic() + 30
        while url and time.monotonic() < deadline:
            page = get(client, url, read_key).json()
            seen += [b["batchId"] for b in page["batches"]]
            cursor = page["next_cursor"]
            url = f"/api/batches/creator/walker/?limit=7&cursor={cursor}" if cursor else None
            time.sleep(0.005)
    finally:
        stop.set()
        writer.join(10)
    assert created, "the writer created nothing during the walk"
    assert len(seen) == len(set(seen)), "a batch was returned twice"
    assert expected <= set(seen), f"{len(expected - set(seen))} batches were skipped"
    assert set(seen) <= expected | set(created)


# --- the operations document's health endpoint and per-operation POST (seed 001) ---------------

SEED_HEALTH_SHAPE = {
    "batch_operations": ["total", "pending", "processing", "completed", "failed"],
    "performance": ["avg_processing_time_ms", "success_rate", "failure_rate"],
    "resources": ["db_collection_size_bytes", "db_indexes_size_bytes", "heap_used_mb"],
}


def test_health_answers_the_documents_names_and_shape_first_with_and_without_slash(
    client, read_key
):
    now = timezone.now()

    def batch(status, ok=0, bad=0, took=None):
        started = now - timedelta(seconds=took) if took is not None else None
        return BatchOperation.objects.create(
            operation="http",
            creator="seed",
            status=status,
            total_items=ok + bad,
            succeeded_items=ok,
            failed_items=bad,
            started_at=started,
            finished_at=now if took is not None else None,
        )

    batch(BatchStatus.PENDING)
    batch(BatchStatus.RUNNING)
    batch(BatchStatus.COMPLETED, ok=9, took=2)
    batch(BatchStatus.COMPLETED_WITH_ERRORS, ok=8, bad=1, took=4)
    batch(BatchStatus.FAILED, bad=2, took=6)
    BatchItem.objects.bulk_create(
        BatchItem(batch=BatchOperation.objects.first(), key=str(n)) for n in range(50)
    )
    for url in ("/api/batches/health", "/api/batches/health/"):
        response = get(client, url, read_key)
        assert response.status_code == 200, (url, response.content)
        body = response.json()
        # The document's keys come first, in its order; the console's extras follow.
        assert list(body)[:5] == ["status", "timestamp", *SEED_HEALTH_SHAPE]
        for section, names in SEED_HEALTH_SHAPE.items():
            assert list(body[section])[: len(names)] == names, section
        assert body["status"] == "degraded"  # 3 of 20 items failed: above 10 %
        assert body["timestamp"].startswith(str(now.year))
        ops = body["batch_operations"]
        assert (ops["total"], ops["pending"], ops["processing"]) == (5, 1, 1)
        assert (ops["completed"], ops["failed"], ops["completed_with_errors"]) == (1, 1, 1)
        perf = body["performance"]
        assert perf["avg_processing_time_ms"] == 4000.0
        assert (perf["success_rate"], perf["failure_rate"]) == (0.85, 0.15)
        resources = body["resources"]
        assert resources["db_collection_size_bytes"] > 0
        assert resources["db_indexes_size_bytes"] > 0
        assert isinstance(resources["heap_used_mb"], int) and resources["heap_used_mb"] > 0
        assert set(resources["table_sizes_bytes"]) == {
            "batches_batchoperation",
            "batches_batchitem",
        }
        assert resources["size_source"] in (
            "pg_total_relation_size - pg_indexes_size, pg_indexes_size",
            "SQLite dbstat",
        )
        assert body["settings"]["maxItems"] >= 1


class BatchesOnTheUnreachableDatabase:
    """Reads of the batches app go to the "unreachable" alias: a PostgreSQL address where
    nothing listens. Everything else (API keys, sessions) stays on the test database."""

    def db_for_read(self, model, **hints):
        return "unreachable" if model._meta.app_label == "batches" else None

    def db_for_write(self, model, **hints):
        return self.db_for_read(model)


@pytest.fixture
def unreachable_database():
    """A real connection to a PostgreSQL address where nothing listens, registered as a
    dynamic alias (not in settings.DATABASES, which the test case guards)."""
    from django.db import connections
    from django.db.utils import load_backend

    from tests.conftest import closed_port

    alias = "unreachable"
    configured = connections.configure_settings(
        {
            "default": dict(connections.settings["default"]),
            alias: {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": closed_port(),
                "NAME": "batches",
                "USER": "ops",
                "PASSWORD": "pw-must-not-show",
                "OPTIONS": {"connect_timeout": 2},
            },
        }
    )
    settings = configured[alias]
    wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, alias)
    connections[alias] = wrapper
    try:
        yield alias
    finally:
        wrapper.close()
        del connections[alias]


def test_health_is_500_unhealthy_when_the_database_cannot_be_read(
    client, read_key, settings, unreachable_database
):
    settings.DATABASE_ROUTERS = [f"{__name__}.BatchesOnTheUnreachableDatabase"]
    started = time.monotonic()
    for url in ("/api/batches/health", "/api/batches/health/"):
        response = get(client, url, read_key)
        assert response.status_code == 500, response.content
        body = response.json()
        assert list(body) == ["status", "error"] and body["status"] == "unhealthy"
        assert body["error"].startswith("the database cannot be read:")
        assert "pw-must-not-show" not in body["error"] and len(body["error"]) < 300
    assert time.monotonic() - started < 10
    settings.DATABASE_ROUTERS = []
    assert get(client, "/api/batches/health/", read_key).status_code == 200


SEED_BODY = {
    "creator": "SP2ZNGJ85ENDY6QTHQ4P3KCQJRNYWB43HCUB7QY0J",
    "items": ["test-id", 7],
    "payload": {"url": "https://api.example/items/{key}", "method": "PUT"},
}


def test_post_to_an_operation_creates_a_batch_and_answers_the_documents_shape(
    client, write_key, read_key
):
    for url in ("/api/batches/http/", "/api/batches/http"):
        response = post(client, SEED_BODY, write_key, url=url)
        assert response.status_code == 201, response.content
        body = response.json()
        assert list(body) == ["message", "batchId", "status", "totalItems"]
        assert body["message"] == "Batch http operation initiated"
        assert (body["status"], body["totalItems"]) == ("pending", 2)
        batch = BatchOperation.objects.get(pk=body["batchId"])
        assert (batch.operation, batch.creator) == ("http", SEED_BODY["creator"])
        assert batch.payload["method"] == "PUT"
        assert sorted(batch.items.values_list("key", flat=True)) == ["7", "test-id"]
        # The same URL still reads a batch by its id.
        detail = get(client, f"/api/batches/{body['batchId']}/", read_key)
        assert detail.status_code == 200 and detail.json()["totalItems"] == 2
    # Naming the URL's operation again in the body is accepted; the backlog operation too.
    assert post(client, {**SEED_BODY, "operation": "http"}, write_key, "/api/batches/http/")
    backlog = {"creator": "ops", "items": ["a"], "payload": {"source": "users"}}
    response = post(client, backlog, write_key, url="/api/batches/backlog/")
    assert response.status_code == 201 and response.json()["totalItems"] == 1
    assert rows() == (4, 7)


@pytest.mark.parametrize(
    ("url", "body", "status", "field"),
    [
        ("/api/batches/teleport/", SEED_BODY, 404, "operation"),
        (f"/api/batches/{'x' * 300}/", SEED_BODY, 404, "operation"),
        ("/api/batches/00000000-0000-0000-0000-000000000000/", SEED_BODY, 404, "operation"),
        ("/api/batches/http/", {**SEED_BODY, "operation": "backlog"}, 400, "operation"),
        (
            "/api/batches/http/",
            {k: v for k, v in SEED_BODY.items() if k != "creator"},
            400,
            "creator",
        ),
        ("/api/batches/http/", {**SEED_BODY, "items": []}, 400, "items"),
        ("/api/batches/http/", {**SEED_BODY, "items": ["a", "a"]}, 400, "items[1]"),
        ("/api/batches/http/", {**SEED_BODY, "payload": {}}, 400, "payload.url"),
        ("/api/batches/http/", {**SEED_BODY, "contentIds": ["x"]}, 400, "contentIds"),
        ("/api/batches/http/", [1, 2], 400, "body"),
        ("/api/batches/http/", b"{not json", 400, "body"),
    ],
)
def test_post_to_an_operation_refuses_unknown_operations_and_bad_input_and_writes_nothing(
    client, write_key, url, body, status, field
):
    response = post(client, body, write_key, url=url)
    assert response.status_code == status, response.content
    answer = response.json()
    assert field in answer["details"], answer
    if status == 404:
        # The answer lists what may be posted to.
        assert "http" in answer["error"] and "backlog" in answer["error"]
    assert rows() == (0, 0)


def test_post_to_an_operation_needs_a_write_key_and_honours_idempotency_keys(
    client, write_key, read_key
):
    assert post(client, SEED_BODY, read_key, url="/api/batches/http/").status_code == 403
    headers = {"HTTP_AUTHORIZATION": f"Bearer {write_key}", "HTTP_IDEMPOTENCY_KEY": "seed-1"}
    first, again = (
        client.post(
            "/api/batches/http/",
            data=json.dumps(SEED_BODY),
            content_type="application/json",
            **headers,
        )
        for _ in range(2)
    )
    assert first.status_code == again.status_code == 201
    assert first.json()["batchId"] == again.json()["batchId"]
    assert rows() == (1, 2)
