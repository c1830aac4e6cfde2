"""No input gets a 500: hostile JSON, filters and URLs get a clear 4xx (JSON on /api/, Django's
error page on pages) and write nothing; pings with any body are recorded; a bug on /api/ is a
JSON 500 whose request id is in the log line."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.apps import apps
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from monitoring.kinds import get_kind
from monitoring.models import Check, CheckRun
from opsconsole.logging import JsonFormatter

pytestmark = pytest.mark.django_db

APP_LABELS = ("monitoring", "backlog", "batches", "opsconsole")


def app_row_counts() -> dict[str, int]:
    """Rows per table of the console's own apps: a refused request must leave them as they were."""
    return {
        model._meta.label: model.objects.count()
        for label in APP_LABELS
        for model in apps.get_app_config(label).get_models()
    }


def heartbeat(name: str = "nightly-backup") -> Check:
    return Check.objects.create(
        name=name, kind="heartbeat", config=get_kind("heartbeat").validate_config({"period": "1h"})
    )


def _boom(request: HttpRequest) -> HttpResponse:
    raise ZeroDivisionError("a bug in a view")


# This module doubles as a URLconf (pytest.mark.urls) that adds a view with a bug to the real ones.
urlpatterns = [path("api/boom/", _boom), path("", include("opsconsole.urls"))]


@pytest.fixture
def write_key(api_key_factory) -> str:
    return api_key_factory("write")


def post_json(client, url: str, body: bytes, key: str, **extra):
    return client.post(
        url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}", **extra
    )


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    data = response.json()
    assert data["error"] and data["details"], data
    return data


VALID_BACKLOG = b'{"key": "user-1", "reason": "sync"}'
VALID_BATCH = b'{"operation": "backlog", "creator": "ops", "items": ["a"]}'

HOSTILE_BODIES = {
    "invalid JSON": b'{"key": ',
    "empty": b"",
    "nested thousands deep": b"[" * 5000 + b"]" * 5000,
    "object nested a hundred deep": b'{"a":' * 100 + b"1" + b"}" * 100,
    "integer with thousands of digits": b'{"key": "a", "payload": {"n": ' + b"9" * 5000 + b"}}",
    "integer with 31 digits": b'{"key": "a", "payload": {"n": ' + b"1" * 31 + b"}}",
    "float overflowing to infinity": b'{"key": "a", "payload": {"n": 1e999}}',
    "NaN": b'{"key": "a", "payload": {"n": NaN}}',
    "Infinity": b'{"key": "a", "payload": [-Infinity]}',
    "lone surrogate in a value": b'{"key": "a\\ud800", "reason": "x"}',
    "lone surrogate in a key": b'{"key": "a", "payload": {"\\udfff": 1}}',
    "NUL in a value": b'{"key": "a", "payload": {"note": "x\\u0000y"}}',
    "NUL in a key": b'{"key": "a", "payload": {"\\u0000": 1}}',
    "raw NUL byte": b'{"key": "a\x00"}',
    "invalid UTF-8": b'{"key": "\xff\xfe"}',
    "UTF-16": '{"key": "a"}'.encode("utf-16"),
    "wrong type": b'"just a string"',
    "list of wrong types": b'[1, null, "x", []]',
}


@pytest.mark.parametrize("url", ["/api/backlog/", "/api/batches/"])
@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_json_bodies_get_a_json_400_and_write_nothing(client, write_key, url, name):
    before = app_row_counts()
    response = post_json(client, url, HOSTILE_BODIES[name], write_key)
    assert_json_error(response, 400)
    assert app_row_counts() == before


def test_the_reason_names_where_the_bad_value_is(client, write_key):
    response = post_json(client, "/api/batches/", HOSTILE_BODIES["NUL in a value"], write_key)
    assert response.json()["details"] == {"payload.note": "contains a NUL character"}
    listed = post_json(client, "/api/backlog/", b'[{"key": "a"}, {"key": "\\ud800"}]', write_key)
    assert listed.json()["details"] == {"[1].key": "contains a lone surrogate (invalid unicode)"}
    deep = post_json(client, "/api/backlog/", HOSTILE_BODIES["nested thousands deep"], write_key)
    assert "nested deeper than 64 levels" in deep.json()["details"]["body"]
    huge = post_json(client, "/api/backlog/", HOSTILE_BODIES["integer with 31 digits"], write_key)
    assert huge.json()["details"]["body"] == "contains an integer with more than 30 digits"


def test_valid_bodies_still_create(client, write_key):
    assert post_json(client, "/api/backlog/", VALID_BACKLOG, write_key).status_code == 201
    assert post_json(client, "/api/batches/", VALID_BATCH, write_key).status_code == 201


@pytest.mark.parametrize("url", ["/api/backlog/", "/api/batches/"])
def test_a_body_over_the_limit_is_a_json_413_and_writes_nothing(client, write_key, settings, url):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    before = app_row_counts()
    body = b'{"key": "a", "reason": "' + b"x" * 5000 + b'"}'
    data = assert_json_error(post_json(client, url, body, write_key), 413)
    assert "4096 bytes" in data["details"]["body"]
    assert app_row_counts() == before


@pytest.mark.parametrize(
    "url",
    [
        "/api/checks/?component=a%00b",
        "/api/checks/?status=%00",
        "/api/alerts/?limit=%C2%B2",
        "/api/alerts/?limit=" + "9" * 5000,
        "/api/alerts/?limit=-1",
        "/api/batches/?creator=%00",
        "/api/batches/creator/a%00b/",
        "/api/batches/?cursor=%00",
        "/api/activity/?window=nan",
    ],
)
def test_hostile_api_filters_get_a_json_400(client, write_key, url):
    heartbeat()
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {write_key}")
    assert_json_error(response, 400)


@pytest.mark.parametrize(
    "url",
    [
        "/checks/?kind=%00",
        "/checks/?component=x%00",
        "/alerts/?status=%00",
        "/backlog/?after=junk",
        "/backlog/?status=failed&after=9999-12-31T23:59:59-23:00~1",
        "/reports/?before=x~y",
        "/batches/?before=" + "1" * 300,
        "/checks/{check}/?before=0001-01-01T00:00:00%2B14:00~1",
        "/batches/?status=%00",
    ],
)
def test_hostile_page_filters_get_the_400_page(staff_client, url):
    check = heartbeat()
    response = staff_client.get(url.format(check=check.pk))
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_a_cursor_with_an_offset_postgresql_refuses_is_read_as_utc(staff_client):
    response = staff_client.get("/backlog/?status=failed&after=2026-01-01T00:00:00%2B20:00~1")
    assert response.status_code == 200


def test_unknown_api_paths_and_wrong_methods_answer_json(client, write_key):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {write_key}"}
    missing = assert_json_error(client.get("/api/nothing-here/", **auth), 404)
    assert missing["details"]["path"] == "/api/nothing-here/"
    wrong = assert_json_error(client.post("/api/status", **auth), 405)
    assert wrong["error"] == "method not allowed"
    assert client.post("/api/status", **auth)["Allow"] == "GET"
    # Pages keep Django's pages.
    assert client.get("/nothing-here/")["Content-Type"].startswith("text/html")


@pytest.mark.urls("tests.test_hostile_input")
def test_a_bug_on_the_api_is_a_json_500_with_the_request_id_in_the_log(client, caplog):
    with caplog.at_level(logging.ERROR, logger="opsconsole.errors"):
        response = client.get("/api/boom/")
    data = assert_json_error(response, 500)
    request_id = data["details"]["request_id"]
    assert response["X-Request-Id"] == request_id
    assert "ZeroDivisionError" not in response.content.decode()
    [record] = [r for r in caplog.records if r.name == "opsconsole.errors"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == request_id
    assert request_id in line["message"]
    assert "ZeroDivisionError: a bug in a view" in line["traceback"]


def test_a_proxy_request_id_is_kept_and_a_hostile_one_replaced(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234abcd")["X-Request-Id"] == "lb-1234abcd"
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="<script>")["X-Request-Id"]
    assert replaced != "<script>" and len(replaced) == 32


def test_a_ping_with_nul_bytes_and_invalid_utf8_is_recorded(client):
    check = heartbeat()
    response = client.post(
        f"/ping/{check.ping_uuid}", b"done\x00 rows=3 \xff\xfe end", content_type="text/plain"
    )
    assert response.status_code == 200
    run = CheckRun.objects.get(check_obj=check)
    assert run.status == "ok"
    assert run.details["body"] == "done\\x00 rows=3 \\xff\\xfe end"


def test_a_ping_is_never_refused_for_its_query_string(client):
    check = heartbeat()
    assert client.get(f"/ping/{check.ping_uuid}?note=%00").status_code == 200
    assert CheckRun.objects.filter(check_obj=check).count() == 1


def test_a_large_ping_body_is_kept_truncated_not_refused(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    check = heartbeat()
    response = client.post(f"/ping/{check.ping_uuid}", b"x" * 50_000, content_type="text/plain")
    assert response.status_code == 200
    run = CheckRun.objects.get(check_obj=check)
    assert run.details["body_truncated"] is True
    assert len(run.details["body"]) == 10 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chunked_post(port: int, url: str, chunks: list[bytes]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", url)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "text/plain")
    conn.endheaders()
    for chunk in chunks:
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.django_db(transaction=True)
def test_a_chunked_ping_body_is_read_like_any_other(subprocess_env):
    """Through gunicorn, the server we run: a chunked body has no Content-Length."""
    check = heartbeat()
    port = _free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "opsconsole.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        env={**subprocess_env, "ALLOWED_HOSTS": "127.0.0.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.1)
        url = f"/ping/{check.ping_uuid}"
        assert _chunked_post(port, url, [b"backup ", b"done\x00", b" \xff"]) == 200
        assert _chunked_post(port, url, [b"y" * 8000, b"z" * 8000]) == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
    small, large = CheckRun.objects.filter(check_obj=check).order_by("id")
    assert small.details["body"] == "backup done\\x00 \\xff"
    assert "body_truncated" not in small.details
    assert large.details["body"] == "y" * 8000 + "z" * (10 * 1024 - 8000)
    assert large.details["body_truncated"] is True
