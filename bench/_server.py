"""Shared by the benchmarks that drive a real gunicorn: a fresh database set up through
``manage.py``, the server on a free loopback port, and its clean stop."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))


def bench_env(database_url: str, workdir: Path) -> dict[str, str]:
    """This environment without the caller's database and Redis, pointed at ``database_url``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_NAME")
    }
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(40),
        DATA_DIR=str(workdir / "data"),
        LOG_LEVEL="warning",
        DJANGO_SETTINGS_MODULE="opsconsole.settings",
    )
    return env


@contextlib.contextmanager
def scratch_postgres(prefix: str) -> Iterator[str | None]:
    """A database made for one benchmark on BENCH_POSTGRES_URL and dropped after it; yields
    its URL, or None (saying why) when PostgreSQL is not answering."""
    # Imported here: the SQLite-only runs of the benchmarks need no PostgreSQL driver.
    import psycopg

    admin_url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = f"{prefix}_{os.getpid()}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        print(f"PostgreSQL skipped: {admin_url} is not answering ({exc})")
        yield None
        return
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def migrate_and_run(env: dict[str, str], script: str, *args: str) -> list[str]:
    """Migrates the database, then runs ``script`` with Django set up; its output's words."""
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    return django_output(env, script, *args)


def django_output(env: dict[str, str], script: str, *args: str) -> list[str]:
    return subprocess.run(
        [PYTHON, "-c", "import django; django.setup(); exec(open(0).read())", *args],
        input=script,
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log_path: Path, *options: str) -> Iterator[int | None]:
    """gunicorn with 2 workers on a free port: yields the port once /healthz answers (None if it
    never came up within 30 s); stopped on exit."""
    port = free_port()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [GUNICORN, "opsconsole.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
            + ["--log-level", "warning", *options],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not _answers(port):
                if time.monotonic() > deadline or server.poll() is not None:
                    print(f"gunicorn did not come up; see {log_path}")
                    port = None
                    break
                time.sleep(0.2)
            yield port
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
