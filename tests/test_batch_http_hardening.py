"""The batch http operation against hostile or odd input: a total deadline per request against
real trickling servers, control characters in item keys, keys percent-encoded in URLs, and
BATCH_HTTP_ALLOWED_HOSTS at creation and at send time."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from batches.executor import lease_seconds, recover, run_batch
from batches.models import BatchItem, BatchOperation, ItemStatus
from batches.operations import get_operation, host_allowed, url_with_key
from batches.services import create_batch
from opsconsole.api import BadRequest
from opsconsole.env import env_host_list
from tests.conftest import reply

API = "/api/batches/"


@pytest.fixture(autouse=True)
def fast_executor(settings):
    settings.BATCH_EXECUTOR_DELAY = 0
    settings.BATCH_RETRY_BACKOFF = 0.01
    settings.BATCH_CHUNK_SIZE = 10
    settings.BATCH_ITEM_MAX_ATTEMPTS = 3
    settings.BATCH_OPERATION_TIMEOUT = 30
    settings.BATCH_HTTP_ALLOWED_HOSTS = []


# --- a trickling server ----------------------------------------------------------------------


@dataclass
class Trickler:
    """A real loopback socket server that answers slowly on purpose: ``headers`` first (all at
    once, or one byte per ``interval`` when ``trickle_headers``), then one body byte per
    ``interval``, for at most ``lasts`` seconds per connection."""

    url: str = ""
    interval: float = 1.0
    lasts: float = 8.0
    trickle_headers: bool = False
    requests: list[tuple[float, str]] = field(default_factory=list)
    closed_by_client: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(65536)
            started = time.monotonic()
            self.requests.append((started, head.split(b"\r\n", 1)[0].decode()))
            headers = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n"
            if self.trickle_headers:
                pieces = [headers[:17]] + [bytes([b]) for b in b"X-Slow: " + b"x" * 1000]
            else:
                pieces = [headers + b"\r\n"] + [b"."] * 100000
            try:
                for piece in pieces:
                    if self.stop.is_set() or time.monotonic() - started > self.lasts:
                        return
                    conn.sendall(piece)
                    # A closed peer shows as readable with no data.
                    conn.settimeout(self.interval)
                    try:
                        if conn.recv(1) == b"":
                            raise ConnectionResetError
                    except TimeoutError:
                        pass
            except OSError:
                self.closed_by_client.append(time.monotonic() - started)


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    server = Trickler(url=f"http://127.0.0.1:{sock.getsockname()[1]}")

    def accept() -> None:
        while not server.stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            threading.Thread(target=server.serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server
    server.stop.set()
    sock.close()


def http_batch(url: str, keys: list, **payload) -> BatchOperation:
    return create_batch(
        {
            "operation": "http",
            "creator": "tests",
            "items": keys,
            "payload": {"url": url, "timeout": 2, **payload},
        }
    )


def run_in_thread(batch: BatchOperation) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        started = time.monotonic()
        try:
            outcome["status"] = run_batch(str(batch.pk))
        finally:
            outcome["elapsed"] = time.monotonic() - started
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


# --- the total deadline ----------------------------------------------------------------------


def test_a_trickling_body_is_cut_off_at_the_item_timeout_inside_the_lease_and_sent_once(
    transactional_db, trickler, settings
):
    settings.BATCH_ITEM_MAX_ATTEMPTS = 1
    batch = http_batch(f"{trickler.url}/items/{{key}}", ["slow"], timeout=2)
    lease = lease_seconds(get_operation("http"), batch.payload, settings.BATCH_CHUNK_SIZE)
    assert lease > 2 + 10  # the deadline is well inside the lease

    thread, outcome = run_in_thread(batch)
    deadline = time.monotonic() + 5
    while not trickler.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trickler.requests, "the item was never sent"
    time.sleep(1.0)
    # Mid-request, recovery sees a live lease: it does not hand the item to another worker.
    assert recover()["released_items"] == 0
    assert BatchItem.objects.get(batch=batch).status == ItemStatus.RUNNING
    thread.join(20)

    assert not thread.is_alive()
    assert 1.8 <= outcome["elapsed"] < 3.5, outcome
    item = BatchItem.objects.get(batch=batch)
    assert item.status == ItemStatus.FAILED
    assert item.error.startswith("timed out after 2 s")
    assert len(trickler.requests) == 1
    # The server saw the connection dropped at the deadline, not at its own end (8 s).
    deadline = time.monotonic() + 3
    while not trickler.closed_by_client and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trickler.closed_by_client and trickler.closed_by_client[0] < 4.0


def test_trickled_headers_are_cut_off_at_the_item_timeout_too(db, trickler, settings):
    settings.BATCH_ITEM_MAX_ATTEMPTS = 1
    trickler.trickle_headers = True
    trickler.interval = 0.5
    batch = http_batch(f"{trickler.url}/items/{{key}}", ["slow"], timeout=1.5)
    started = time.monotonic()
    run_batch(str(batch.pk))
    elapsed = time.monotonic() - started
    assert elapsed < 3.0
    item = BatchItem.objects.get(batch=batch)
    assert (item.status, item.error) == (
        ItemStatus.FAILED,
        "timed out after 1.5 s (after 1 attempts)",
    )
    assert len(trickler.requests) == 1


def test_retries_of_a_trickled_item_never_overlap(db, trickler, settings):
    settings.BATCH_ITEM_MAX_ATTEMPTS = 2
    trickler.interval = 0.2
    batch = http_batch(f"{trickler.url}/items/{{key}}", ["slow"], timeout=1)
    run_batch(str(batch.pk))
    assert [line for _, line in trickler.requests] == ["POST /items/slow HTTP/1.1"] * 2
    first, second = (at for at, _ in trickler.requests)
    assert second - first >= 1.0  # the second attempt began after the first was cut off


def test_an_answer_within_the_timeout_still_succeeds_and_a_huge_one_is_read_only_in_part(
    db, http_server
):
    big = http_server(lambda request: reply(200, "x" * 5_000_000))
    batch = http_batch(f"{big.url}/items/{{key}}", ["a", "b"], timeout=5)
    assert run_batch(str(batch.pk)) == "completed"
    for item in batch.items.all():
        assert item.result == {"status": 200, "body": "x" * 500}


# --- item keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("bell\x07", "U+0007"),
        ("tab\there", "U+0009"),
        ("line\nbreak", "U+000A"),
        ("esc\x1b[31m", "U+001B"),
        ("del\x7f", "U+007F"),
        ("nel\x85", "U+0085"),
        ("nul\x00", "U+0000"),
    ],
)
def test_keys_with_control_characters_are_refused_naming_the_item(db, key, code):
    with pytest.raises(BadRequest) as caught:
        http_batch("http://127.0.0.1:9/items/{key}", ["fine", key])
    assert caught.value.status == 400
    message = caught.value.details["items[1]"]
    assert code in message and ascii(key) in message
    assert "items[0]" not in caught.value.details
    assert BatchOperation.objects.count() == 0


def test_the_api_answers_400_for_control_characters_and_creates_nothing(client, api_key_factory):
    key = api_key_factory("write")
    body = {
        "operation": "http",
        "creator": "tests",
        "items": ["ok", "bell\u0007", "tab\there"],
        "payload": {"url": "http://127.0.0.1:9/items/{key}"},
    }
    response = client.post(
        API, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 400
    details = response.json()["details"]
    assert "U+0007" in details["items[1]"] and "U+0009" in details["items[2]"]
    assert BatchOperation.objects.count() == 0


def test_keys_are_percent_encoded_in_the_url_and_sent_whole_in_body_and_header(db, http_server):
    server = http_server(lambda request: reply(200, "ok"))
    keys = ["a/b", "x y", "100%", "q?x=1#f", "café", "..", "plain-1"]
    batch = http_batch(f"{server.url}/items/{{key}}?k={{key}}", keys, body={"id": "{key}"})
    assert run_batch(str(batch.pk)) == "completed"
    seen = {request.json()["id"]: request for request in server.requests}
    assert set(seen) == set(keys)
    expected = {
        "a/b": "a%2Fb",
        "x y": "x%20y",
        "100%": "100%25",
        "q?x=1#f": "q%3Fx%3D1%23f",
        "café": "caf%C3%A9",
        "..": "%2E%2E",
        "plain-1": "plain-1",
    }
    for key, encoded in expected.items():
        assert seen[key].path == f"/items/{encoded}?k={encoded}"
        # http.server reads header bytes as Latin-1; the key went out as UTF-8.
        header = seen[key].headers["Idempotency-Key"].encode("latin-1").decode()
        assert header == f"{batch.pk}:{key}"


def test_url_with_key_keeps_the_template_and_encodes_only_the_key():
    assert url_with_key("https://h/a/{key}/b?x={key}", "1/2") == "https://h/a/1%2F2/b?x=1%2F2"
    assert url_with_key("https://h/{key}", ".") == "https://h/%2E"


# --- BATCH_HTTP_ALLOWED_HOSTS ----------------------------------------------------------------


def test_a_host_outside_the_allow_list_is_refused_at_creation(client, api_key_factory, settings):
    settings.BATCH_HTTP_ALLOWED_HOSTS = ["api.example.com", ".internal.example"]
    with pytest.raises(BadRequest) as caught:
        http_batch("http://127.0.0.1:9/items/{key}", ["a"])
    assert "BATCH_HTTP_ALLOWED_HOSTS" in caught.value.details["payload.url"]

    key = api_key_factory("write")
    body = {
        "operation": "http",
        "creator": "tests",
        "items": ["a"],
        "payload": {"url": "http://169.254.169.254/latest/{key}"},
    }
    response = client.post(
        API, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 400
    assert "169.254.169.254" in response.json()["details"]["payload.url"]
    assert BatchOperation.objects.count() == 0


def test_a_host_on_the_allow_list_is_accepted_and_served(db, http_server, settings):
    settings.BATCH_HTTP_ALLOWED_HOSTS = ["127.0.0.1"]
    server = http_server(lambda request: reply(200, "ok"))
    batch = http_batch(f"{server.url}/items/{{key}}", ["a"])
    assert run_batch(str(batch.pk)) == "completed"
    assert len(server.requests) == 1


def test_the_allow_list_is_checked_again_when_sending(db, http_server, settings):
    server = http_server(lambda request: reply(200, "ok"))
    batch = http_batch(f"{server.url}/items/{{key}}", ["a", "b"])
    settings.BATCH_HTTP_ALLOWED_HOSTS = ["api.example.com"]
    assert run_batch(str(batch.pk)) == "failed"
    assert server.requests == []
    for item in batch.items.all():
        assert item.error == "host '127.0.0.1' is not in BATCH_HTTP_ALLOWED_HOSTS"
        assert item.attempts == 1  # a permanent failure: not retried


def test_the_key_cannot_choose_the_host(db):
    with pytest.raises(BadRequest) as caught:
        http_batch("http://{key}.example.com/items", ["a"])
    assert "not in the host" in caught.value.details["payload.url"]


def test_host_patterns(settings):
    settings.BATCH_HTTP_ALLOWED_HOSTS = ["api.example.com", ".corp.example", "::1"]
    assert host_allowed("api.example.com") and host_allowed("API.Example.com.")
    assert host_allowed("corp.example") and host_allowed("a.b.corp.example")
    assert host_allowed("::1")
    assert not host_allowed("example.com")
    assert not host_allowed("evilcorp.example")
    assert not host_allowed("api.example.com.evil.net")
    settings.BATCH_HTTP_ALLOWED_HOSTS = []
    assert host_allowed("anything.example")


def test_the_allow_list_setting_is_parsed_strictly(monkeypatch):
    monkeypatch.setenv(
        "BATCH_HTTP_ALLOWED_HOSTS", " API.example.com, .corp.example,[::1],10.0.0.1 "
    )
    assert env_host_list("BATCH_HTTP_ALLOWED_HOSTS") == [
        "api.example.com",
        ".corp.example",
        "::1",
        "10.0.0.1",
    ]
    monkeypatch.setenv("BATCH_HTTP_ALLOWED_HOSTS", "")
    assert env_host_list("BATCH_HTTP_ALLOWED_HOSTS") == []
    for bad in ("https://api.example.com", "api.example.com:8443", "api.example.com/x", "a b"):
        monkeypatch.setenv("BATCH_HTTP_ALLOWED_HOSTS", bad)
        with pytest.raises(ImproperlyConfigured, match="BATCH_HTTP_ALLOWED_HOSTS"):
            env_host_list("BATCH_HTTP_ALLOWED_HOSTS")
