"""Hypothesis fuzzing of every API endpoint and every page's GET filters, listed from the URLconf
so that a new route is fuzzed without being named here: never a 5xx, and a 4xx writes no row.

Requests go through the test client, so the whole middleware chain runs. The budget is fixed
(derandomized, a set number of examples) so that a run costs the same every time."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from urllib.parse import quote, quote_from_bytes

import pytest
from django.apps import apps
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backlog.models import BacklogEntry
from batches.models import BatchItem, BatchOperation
from monitoring.kinds import get_kind
from monitoring.models import Alert, Check, CheckRun
from opsconsole.models import ApiKey

pytestmark = pytest.mark.django_db

API_EXAMPLES = 1000
PAGE_EXAMPLES = 100
APP_LABELS = ("monitoring", "backlog", "batches", "opsconsole")
# Only API-key bookkeeping may change on a refused request; ApiKey rows are not created by any.
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _routes(patterns: list, prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


ROUTES = sorted(set(_routes(get_resolver().url_patterns)))
API_ROUTES = [r for r in ROUTES if r.startswith("api/")]
# Pages a person opens with GET and filters: not the admin (Django's), not pings or signed
# links (tested on their own), not the POST-only actions.
PAGE_ROUTES = [
    r
    for r in ROUTES
    if not r.startswith(("api/", "admin/", "ping/", "ack/", "healthz", "metrics"))
    and not r.rstrip("/").endswith(
        (
            "acknowledge",
            "resolve",
            "snooze",
            "note",
            "run",
            "mute",
            "retry",
            "cancel",
            "retry-failed",
        )
    )
]
FILTER_NAMES = [
    "status",
    "severity",
    "kind",
    "component",
    "window",
    "before",
    "after",
    "cursor",
    "limit",
    "items_limit",
    "items_cursor",
    "creator",
]


def _table_counts_sql() -> str:
    tables = [
        model._meta.db_table
        for label in APP_LABELS
        for model in apps.get_app_config(label).get_models()
        if model is not ApiKey
    ]
    quoted = ", ".join(
        f"(SELECT COUNT(*) FROM {connection.ops.quote_name(table)})" for table in tables
    )
    return f"SELECT {quoted}"


def row_counts(sql: str) -> tuple[int, ...]:
    """All app tables counted in one round trip: it runs twice per request."""
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return tuple(cursor.fetchone())


# --- strategies -----------------------------------------------------------------------------

NASTY_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "NaN",
    "Infinity",
    "-1",
    "0",
    "1e999",
    "²",
    "١٢",
    " 5 ",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "~",
    "~1",
    "x~y",
    "9999-12-31T23:59:59-23:00~1",
    "0001-01-01T00:00:00+14:00~1",
    "2026-01-01T00:00:00~99999999999999999999999",
    "open",
    "failed",
    "critical",
    "30m",
]

texts = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    # Built, not listed: a 5,000-character literal would bloat every failure report.
    st.integers(min_value=4000, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=300, max_value=6000).map(lambda n: "a" * n),
    st.text(max_size=6),
    st.characters(max_codepoint=0x1F),
    st.characters(categories=["Cs"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=5,
)
known_fields = st.fixed_dictionaries(
    {},
    optional={
        "operation": st.one_of(st.sampled_from(["backlog", "http"]), scalars),
        "creator": st.one_of(st.just("ops"), scalars),
        "items": st.one_of(st.lists(scalars, max_size=3), scalars),
        "payload": json_values,
        "key": st.one_of(st.just("user-1"), scalars),
        "source": scalars,
        "reason": scalars,
    },
)
entry_like = st.tuples(known_fields, st.dictionaries(texts, scalars, max_size=1)).map(
    lambda parts: {**parts[1], **parts[0]}
)


def _dumps(value: object) -> bytes:
    # ensure_ascii writes lone surrogates as \\udXXX escapes; allow_nan writes NaN/Infinity.
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


bodies = st.one_of(
    json_values.map(_dumps),
    entry_like.map(_dumps),
    st.lists(entry_like, max_size=2).map(_dumps),
    st.binary(max_size=32),
    st.integers(min_value=1, max_value=20_000).map(_deep),
    st.integers(min_value=20, max_value=6000).map(lambda n: b'{"key": ' + b"9" * n + b"}"),
    st.sampled_from([b"", b"{", b'{"key": "a\x00"}', b'{"key": "\xff"}', b"NaN", b"\x00"]),
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xx",
        "multipart/form-data",
    ]
)


def _as_bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


query_values = st.one_of(texts.map(_as_bytes), st.binary(max_size=8))
query_strings = st.lists(
    st.tuples(st.one_of(st.sampled_from(FILTER_NAMES), texts.map(_as_bytes)), query_values),
    max_size=3,
).map(
    lambda pairs: "&".join(
        f"{quote(k) if isinstance(k, str) else quote_from_bytes(k)}={quote_from_bytes(v)}"
        for k, v in pairs
    )
)


@pytest.fixture(autouse=True)
def quiet_request_log() -> Iterator[None]:
    """Thousands of expected 4xx warnings would cost more than the requests; 5xx still log."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture
def world(db) -> dict[str, str]:
    """One object of each kind the routes point at, so that ids resolve and views do work."""
    check = Check.objects.create(
        name="fuzz-heartbeat",
        kind="heartbeat",
        config=get_kind("heartbeat").validate_config({"period": "1h"}),
    )
    CheckRun.objects.create(check_obj=check, status="ok", message="")
    alert = Alert.objects.create(
        dedup_key="fuzz", check_obj=check, component="fuzz", title="fuzz alert", severity="critical"
    )
    now = timezone.now()
    batch = BatchOperation.objects.create(
        operation="backlog", creator="ops", total_items=1, created_at=now, heartbeat_at=now
    )
    BatchItem.objects.create(batch=batch, key="a", next_attempt_at=now, updated_at=now)
    BacklogEntry.objects.create(source="fuzz", key="k1")
    return {
        "int": str(check.pk),
        "alert": str(alert.pk),
        "uuid": str(batch.pk),
        "creator": "ops",
    }


def _path_values(route: str, world: dict[str, str]) -> st.SearchStrategy[str]:
    """The route with each <converter:name> filled by a real id or hostile text."""
    params = _PARAM.findall(route)
    parts: list[st.SearchStrategy[str]] = []
    for converter, name in params:
        if converter == "int":
            real = world["alert"] if "alert" in name else world["int"]
            parts.append(
                st.one_of(st.just(real), st.integers(min_value=0, max_value=10**30).map(str))
            )
        elif converter == "uuid":
            parts.append(st.one_of(st.just(world["uuid"]), st.uuids().map(str)))
        else:
            real = world["creator"] if name == "creator" else world["uuid"]
            hostile = st.one_of(texts.map(_as_bytes), st.binary(min_size=1, max_size=16)).map(
                lambda b: quote_from_bytes(b, safe="") or "x"
            )
            parts.append(st.one_of(st.just(real), hostile))

    def fill(values: tuple[str, ...]) -> str:
        filled = route
        for (converter, name), value in zip(params, values, strict=True):
            token = f"<{converter}:{name}>" if converter else f"<{name}>"
            filled = filled.replace(token, value, 1)
        return "/" + filled

    return st.tuples(*parts).map(fill)


def _check(response, method: str, url: str) -> None:
    status = response.status_code
    assert status < 500, f"{method} {url}: {status} {response.content[:300]!r}"


class RowWatch:
    """Row counts after the last write request: a refused write must leave them unchanged.
    Counted after writes only (one query each); a GET that wrote a row would still show at the
    next count and fail the run."""

    def __init__(self) -> None:
        self.sql = _table_counts_sql()
        self.counts = row_counts(self.sql)

    def after_write(self, response, method: str, url: str) -> None:
        after = row_counts(self.sql)
        if 400 <= response.status_code < 500:
            assert after == self.counts, f"{method} {url} answered {response.status_code} but wrote"
        self.counts = after


def _budget_note(route: str, started: float, requests: int, minimum: int) -> None:
    elapsed = time.monotonic() - started
    assert requests >= minimum, f"{route}: only {requests} requests generated"
    print(f"{route}: {requests} requests in {elapsed:.1f}s")


def _fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.parametrize("route", API_ROUTES)
def test_api_endpoint_never_answers_5xx_and_a_4xx_writes_nothing(
    client, staff_user, api_key_factory, world, route
):
    """Each example is sent four ways (GET, POST with a key, POST as staff without the CSRF
    token, another method): generating an example costs more than sending it."""
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {api_key_factory('write')}"}
    staff = Client()
    staff.force_login(staff_user)
    watch = RowWatch()
    counter = {"requests": 0}
    started = time.monotonic()

    @_fuzz_settings(API_EXAMPLES // 4)
    @given(
        path=_path_values(route, world),
        query=query_strings,
        other_method=st.sampled_from(["PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
        body=bodies,
        content_type=content_types,
    )
    def run(path: str, query: str, other_method: str, body: bytes, content_type: str):
        url = f"{path}?{query}" if query else path
        sends = [
            (client, "GET", bearer),
            (client, "POST", bearer),
            (staff, "POST", {}),
            (client, other_method, bearer),
        ]
        for chosen, method, auth in sends:
            response = chosen.generic(method, url, body, content_type=content_type, **auth)
            counter["requests"] += 1
            _check(response, method, url)
            if method != "GET":
                watch.after_write(response, method, url)
            if response.status_code >= 400 and method != "HEAD":
                assert response["Content-Type"].startswith("application/json"), url
                assert "error" in response.json()

    run()
    watch.after_write(HttpResponse(status=400), "GET", route)
    _budget_note(route, started, counter["requests"], API_EXAMPLES)


@pytest.mark.parametrize("route", PAGE_ROUTES)
def test_page_filters_never_answer_5xx(staff_client, world, route):
    """Each example twice: its own query string, and one value in every known filter."""
    watch = RowWatch()
    counter = {"requests": 0}
    started = time.monotonic()

    @_fuzz_settings(PAGE_EXAMPLES // 2)
    @given(path=_path_values(route, world), query=query_strings, value=query_values)
    def run(path: str, query: str, value: bytes):
        every_filter = "&".join(f"{name}={quote_from_bytes(value)}" for name in FILTER_NAMES)
        for url in (f"{path}?{query}", f"{path}?{every_filter}"):
            response = staff_client.get(url)
            counter["requests"] += 1
            _check(response, "GET", url)

    run()
    watch.after_write(HttpResponse(status=400), "GET", route)
    _budget_note(route, started, counter["requests"], PAGE_EXAMPLES)


def test_every_route_is_fuzzed():
    """A new route lands in one of the two lists or is excluded on purpose above."""
    assert "api/batches/" in API_ROUTES and "api/backlog/" in API_ROUTES
    assert "checks/" in PAGE_ROUTES and "backlog/" in PAGE_ROUTES
    assert len(API_ROUTES) >= 12, API_ROUTES
