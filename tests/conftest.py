"""Shared fixtures: real loopback servers, real Redis and PostgreSQL, the system Chromium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from opsconsole.datadir import prepare_data_dir, read_development_key

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# beside it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _required(variable: str) -> bool:
    return os.environ.get(variable) == "1"


def skip_or_fail(reason: str, required_by: str = "REQUIRE_SERVICES") -> None:
    if _required(required_by):
        pytest.fail(f"{reason} (required here: {required_by}=1)")
    pytest.skip(reason)


# --- test-only settings ----------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Without SECRET_KEY the run signs with the installation's development key, like the
    manage.py processes the tests start: settings only read the key, so it is made here, as
    manage.py makes it."""
    if settings.DEVELOPMENT_MODE:
        settings.SECRET_KEY = read_development_key(prepare_data_dir()) or settings.SECRET_KEY
        # django-q2 copies the key when it is imported, which pytest-django's set-up did
        # before this hook: on a fresh checkout (no key file yet) that copy is another key,
        # and a worker process could not read the tasks this run signs.
        from django_q.conf import Conf

        Conf.SECRET_KEY = settings.SECRET_KEY


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    """The test database: ``TEST_DATABASE_NAME`` (two runs can share a server), else on SQLite
    a file of this run, so that tests can start real worker processes on it. (No xdist here:
    pytest-django's per-worker suffix is not needed.)"""
    database = settings.DATABASES["default"]
    name = os.environ.get("TEST_DATABASE_NAME") or (
        f"/tmp/opsconsole-test-{os.getpid()}.sqlite3" if "sqlite" in database["ENGINE"] else ""
    )
    if name:
        database.setdefault("TEST", {})["NAME"] = name


# --- loopback HTTP servers -------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class LoopbackServer:
    """A real HTTP server on 127.0.0.1. ``handler(request) -> (status, headers, body)``."""

    handler: Callable[[Recorded], Reply]
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LoopbackServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without this, Nagle + delayed ACK add
            # 40 ms to every keep-alive request.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, dict(self.headers), body)
                with outer.lock:
                    outer.requests.append(recorded)
                status, headers, payload = outer.handler(recorded)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # Read by the constructor's listen(): set afterwards it is ignored, the backlog
            # stays at 5 and bursts of connections wait for a 1 s SYN retry.
            request_queue_size = 1024
            daemon_threads = True

        server = Server(("127.0.0.1", 0), Handler)
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


def reply(status: int = 200, body: str | bytes = "ok", content_type: str = "text/plain") -> Reply:
    payload = body.encode() if isinstance(body, str) else body
    return status, {"Content-Type": content_type}, payload


@pytest.fixture
def http_server() -> Iterator[Callable[..., LoopbackServer]]:
    """Factory: ``http_server(handler)`` starts a real server; all stop after the test."""
    servers: list[LoopbackServer] = []

    def start(handler: Callable[[Recorded], Reply] | None = None) -> LoopbackServer:
        server = LoopbackServer(handler or (lambda request: reply())).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                accepted.append(conn)
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    for conn in accepted:
        conn.close()
    sock.close()


def closed_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- real services ---------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    import redis

    url = (
        os.environ.get("REDIS_URL")
        or os.environ.get("TEST_REDIS_URL")
        or "redis://127.0.0.1:6379/15"
    )
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        skip_or_fail(f"Redis at {url} is not answering: {exc}")
    return url


@pytest.fixture
def postgres_dsn() -> str:
    """A DSN of a real PostgreSQL server (not the Django test database)."""
    import psycopg

    dsn = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except Exception as exc:  # noqa: BLE001
        skip_or_fail(f"PostgreSQL at {dsn} is not answering: {exc}")
    return dsn


@pytest.fixture(autouse=True)
def _no_task_left_queued_by_an_earlier_test() -> None:
    """With the Redis broker, a task an earlier test queued (no cluster ran it) would stay in
    the list and count as "queued" here; the list is this test run's own key, in its own DB."""
    if not settings.REDIS_URL:
        return
    # Imported here: django_q.conf reads the settings when it is imported.
    import redis
    from django_q.conf import Conf

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.delete(f"django_q:{Conf.CLUSTER_NAME}:q")
    except redis.RedisError:
        pass
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _no_metrics_snapshot_from_an_earlier_test() -> None:
    """/metrics serves this process's snapshot for METRICS_SNAPSHOT_SECONDS: one built by an
    earlier test (with other settings, another Redis) must not answer for this one."""
    # Imported here: the monitoring app is only importable once Django is set up.
    from monitoring.observability import snapshot

    snapshot.reset_local()


@pytest.fixture(autouse=True)
def _sql_checks_may_run_as_the_test_superuser(settings) -> None:
    # The test servers' roles are superusers; tests/test_sql_safety.py turns this off again
    # to prove the refusal and runs its attacks as a least-privilege role.
    settings.SQL_CHECKS_ALLOW_SUPERUSER = True


def on_postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


@pytest.fixture
def once_per_suite() -> None:
    """For a test whose subject does not depend on the database (signals, the process table):
    it runs in the SQLite run only, so the suite does not pay for it twice."""
    if on_postgres():
        pytest.skip("does not depend on the database: runs in the SQLite run")


@pytest.fixture
def needs_postgres() -> None:
    if not on_postgres():
        pytest.skip("runs in the PostgreSQL test run (DATABASE_URL=postgres://…)")


@pytest.fixture
def subprocess_env(transactional_db) -> dict[str, str]:
    """Environment for child processes (manage.py, qcluster, gunicorn) using the test database."""
    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = (
            f"sqlite:///{db['NAME']}"
            if db["NAME"].startswith("/")
            else f"sqlite:///{Path(db['NAME']).resolve()}"
        )
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        env["DATABASE_URL"] = (
            f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["DJANGO_SETTINGS_MODULE"] = "opsconsole.settings"
    env["SQL_CHECKS_ALLOW_SUPERUSER"] = "true"
    env.setdefault("LOG_FORMAT", "json")
    env["PYTHONPATH"] = str(ROOT)
    return env


def manage(*args: str) -> list[str]:
    """A command line for ``manage.py`` with this interpreter."""
    return [sys.executable, str(ROOT / "manage.py"), *args]


# --- a real task queue -------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")


@pytest.fixture
def qcluster(subprocess_env, tmp_path) -> Iterator[subprocess.Popen]:
    """A real ``manage.py qcluster`` on the test database; ``.stop()`` or the end of the test
    stops it (SIGTERM, then SIGKILL of its group after 20 s)."""
    log = open(tmp_path / "qcluster.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        manage("qcluster"),
        env=subprocess_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    proc.stop = stop
    yield proc
    stop()
    log.close()


# --- users and clients -----------------------------------------------------------------------


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        "oncall", password="s3cret-pass", is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def plain_user_client(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="s3cret-pass", is_staff=False)
    client.force_login(user)
    return client


@pytest.fixture
def api_key_factory(db):
    from opsconsole.models import ApiKey

    def create(scope: str = "read", name: str | None = None) -> str:
        _, raw = ApiKey.create(name or f"test-{scope}-{time.monotonic_ns()}", scope)
        return raw

    return create


# --- browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install -y chromium)", "REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def logged_in_page(page, live_server, django_user_model):
    """A browser page logged in through the real login form as staff user 'oncall'."""
    django_user_model.objects.create_user(
        "oncall", password="s3cret-pass", is_staff=True, is_superuser=True
    )
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "oncall")
    page.fill("#id_password", "s3cret-pass")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return page


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
