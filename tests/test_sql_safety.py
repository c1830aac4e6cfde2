"""SQL checks cannot write, by construction: attacks at load time, through "Run now" and
through runchecks, on PostgreSQL (as a least-privilege role) and on SQLite; who may author SQL.

The guarantee under test is the database's (one prepared statement, read-only session and
transaction, timeouts, a role without privileges; a ``mode=ro`` SQLite connection with an
authorizer), not the load-time text screen: every attack is also planted straight into the
database, as if the screen had missed it, and must still change nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection

from monitoring.checks.checkfile import CheckFileError
from monitoring.checks.runner import run_checks
from monitoring.models import Check
from tests.conftest import on_postgres

pytestmark = pytest.mark.django_db(transaction=True)

VICTIM = "sqlsafety_victim"

# Attacks that any database must refuse. {victim} is the table; {role} the checks' role.
COMMON_ATTACKS = {
    "two statements": "SELECT 1; DELETE FROM {victim}",
    "update": "UPDATE {victim} SET secret = 'owned'",
    "insert": "INSERT INTO {victim} (secret) VALUES ('owned')",
    "delete returning": "DELETE FROM {victim} RETURNING 1",
    "drop": "DROP TABLE {victim}",
    "comment then statement": "SELECT 1 /* harmless */; DELETE FROM {victim} -- tail",
    "line comment hides nothing": "SELECT 1 -- ;\n; UPDATE {victim} SET secret = 'owned'",
    "standard quotes": "SELECT 'it''s; fine'; DELETE FROM {victim}; SELECT ''",
    "make attacker superuser": "SELECT 1; UPDATE auth_user SET is_superuser = TRUE",
}

POSTGRES_ATTACKS = {
    "commit then write": "SELECT 1; COMMIT; DELETE FROM {victim}",
    "rollback then write": "SELECT 1; ROLLBACK; UPDATE {victim} SET secret = 'owned'",
    "reset then write": "SELECT 1; RESET ALL; SET default_transaction_read_only = off; "
    "DELETE FROM {victim}",
    "escape string hides a statement": "SELECT E'\\''; DELETE FROM {victim}; SELECT ''",
    "dollar quotes": "SELECT $q$ x $q$; DELETE FROM {victim}; SELECT $q$ y $q$",
    "identifier with a dollar": "SELECT 1 AS a$b$, 2; DELETE FROM {victim}; SELECT 3 AS c$b$",
    "set session": "SET default_transaction_read_only = off",
    "set_config": "SELECT set_config('transaction_read_only', 'off', true)",
    "set_config then write": "SELECT set_config('default_transaction_read_only', 'off', false);"
    " DELETE FROM {victim}",
    "writing cte": "WITH gone AS (DELETE FROM {victim} RETURNING 1) SELECT count(*) FROM gone",
    "select for update": "SELECT count(*) FROM (SELECT 1 FROM {victim} FOR UPDATE) locked",
    "copy to stdout": "COPY {victim} TO STDOUT",
    "copy to program": "COPY (SELECT 1) TO PROGRAM 'touch /tmp/sqlsafety-owned'",
    "copy from": "COPY {victim} (secret) FROM PROGRAM 'echo owned'",
    "nextval": "SELECT nextval('{victim}_id_seq')",
    "lo_import": "SELECT lo_import('/etc/hostname')",
    "terminate sessions": "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE pid <> pg_backend_pid()",
    "grant myself": "SELECT 1; ALTER ROLE {role} SUPERUSER",
    "create role": "SELECT 1; CREATE ROLE sqlsafety_evil SUPERUSER LOGIN",
    "sleep past the timeout": "SELECT 1 FROM pg_sleep(5)",
}

SQLITE_ATTACKS = {
    "attach a new file": "ATTACH DATABASE '/tmp/sqlsafety-owned.sqlite3' AS owned",
    "pragma": "PRAGMA query_only = OFF",
    "vacuum into a file": "VACUUM INTO '/tmp/sqlsafety-owned-vacuum.sqlite3'",
    "writing cte": "WITH x AS (SELECT 1) INSERT INTO {victim} (secret) SELECT 'owned' FROM x",
    "begin": "BEGIN IMMEDIATE",
    "sleep past the timeout": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 100000000) SELECT count(*) FROM n",
}

FILES_AN_ATTACK_MIGHT_WRITE = (
    Path("/tmp/sqlsafety-owned"),
    Path("/tmp/sqlsafety-owned.sqlite3"),
    Path("/tmp/sqlsafety-owned-vacuum.sqlite3"),
)


@pytest.fixture
def victim() -> str:
    """A table of the console's database that attacks aim at (dropped afterwards: the test
    database's flush only empties the tables it knows)."""
    serial = "serial" if on_postgres() else "integer"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {VICTIM}")
        cursor.execute(f"CREATE TABLE {VICTIM} (id {serial} PRIMARY KEY, secret text)")
        cursor.execute(f"INSERT INTO {VICTIM} (secret) VALUES ('kept'), ('also kept')")
    yield VICTIM
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {VICTIM}")


def _snapshot() -> str:
    """A digest of everything an attack might change: rows, roles, sequences, large objects."""
    parts: list[str] = []
    with connection.cursor() as cursor:
        for table in (VICTIM, "auth_user", "auth_user_user_permissions", "opsconsole_apikey"):
            cursor.execute(f"SELECT * FROM {table} ORDER BY 1")
            parts.append(repr(cursor.fetchall()))
        if on_postgres():
            cursor.execute(f"SELECT last_value, is_called FROM {VICTIM}_id_seq")
            parts.append(repr(cursor.fetchall()))
            cursor.execute(
                "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
                "WHERE rolname LIKE 'sqlsafety%%' OR rolname LIKE 'opsconsole_check%%' "
                "ORDER BY rolname"
            )
            parts.append(repr(cursor.fetchall()))
            cursor.execute("SELECT count(*) FROM pg_largeobject_metadata")
            parts.append(repr(cursor.fetchall()))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@pytest.fixture
def least_privilege(settings):
    """PostgreSQL: checks against the console's data run as a role with SELECT and nothing else
    (the docs/checks.md recipe); SQLite: the console's file through a read-only connection."""
    settings.SQL_CHECKS_ALLOW_SUPERUSER = False
    if not on_postgres():
        yield None
        return
    db = settings.DATABASES["default"]
    role = f"opsconsole_check_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN")
        cursor.execute(f'GRANT CONNECT ON DATABASE "{db["NAME"]}" TO {role}')
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(
            "REVOKE ALL ON auth_user, auth_user_groups, auth_user_user_permissions, "
            f"django_session, opsconsole_apikey FROM {role}"
        )
    host = db["HOST"] or "127.0.0.1"
    settings.SQL_CHECKS_DATABASE_URL = f"postgres://{role}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
    yield role
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role]
        )
        cursor.execute(f"DROP OWNED BY {role}")
        cursor.execute(f"DROP ROLE {role}")


def _attacks(role: str | None) -> dict[str, str]:
    attacks = dict(COMMON_ATTACKS)
    attacks.update(POSTGRES_ATTACKS if on_postgres() else SQLITE_ATTACKS)
    return {name: sql.format(victim=VICTIM, role=role or "x") for name, sql in attacks.items()}


def _plant(attacks: dict[str, str]) -> list[Check]:
    """Stored as if the text screen had let them through: the run must refuse them itself."""
    return [
        Check.objects.create(
            name=f"attack {index}: {name}",
            kind="sql_value",
            config={"sql": sql, "statement_timeout": 1},
            timeout_seconds=3,
        )
        for index, (name, sql) in enumerate(attacks.items())
    ]


def _assert_all_refused(checks: list[Check]) -> None:
    for check in checks:
        check.refresh_from_db()
        assert check.status == "critical", (check.name, check.config["sql"], check.last_message)
        message = check.last_message
        assert message and len(message) < 400, (check.name, message)
        assert any(
            phrase in message
            for phrase in (
                "refused",
                "timed out",
                "permission denied",
                "not a number",
                "returned no rows",
                "must be",
                "query failed",
            )
        ), (check.name, message)


def test_every_attack_fails_at_load_run_now_and_runchecks(
    victim, least_privilege, tmp_path, client, django_user_model
):
    superuser = django_user_model.objects.create_superuser("root-of-console", password="x" * 12)
    client.force_login(superuser)
    if on_postgres():
        victim_session = psycopg.connect(
            f"postgres://{settings.DATABASES['default']['USER']}@127.0.0.1:"
            f"{settings.DATABASES['default']['PORT'] or 5432}/{settings.DATABASES['default']['NAME']}",
            autocommit=True,
        )
    attacks = _attacks(least_privilege)
    for path in FILES_AN_ATTACK_MIGHT_WRITE:
        path.unlink(missing_ok=True)  # markers of an earlier run, so this run proves its own
    before = _snapshot()

    # 1. Load time: a friendly early refusal, or a check that the run refuses later.
    for name, sql in attacks.items():
        path = tmp_path / "attack.yaml"
        path.write_text(
            json.dumps(
                {"checks": [{"name": "loaded", "kind": "sql_value", "config": {"sql": sql}}]}
            )
        )
        try:
            call_command("loadchecks", str(path), stdout=open("/dev/null", "w"))
        except CheckFileError:
            pass
        except Exception as exc:  # CommandError carries the file's errors
            assert "config.sql" in str(exc), (name, exc)
    loaded = list(Check.objects.filter(name="loaded"))
    if loaded:
        run_checks(loaded, claim=False)
        Check.objects.filter(name="loaded").delete()

    checks = _plant(attacks)
    # 2. "Run now" in the admin.
    response = client.post(
        "/admin/monitoring/check/",
        {"action": "run_now", "_selected_action": [c.pk for c in checks]},
    )
    assert response.status_code == 302
    _assert_all_refused(checks)
    assert _snapshot() == before

    # 3. runchecks, as cron runs it.
    call_command(
        "runchecks",
        *[arg for c in checks for arg in ("--check", c.name)],
        stdout=open("/dev/null", "w"),
    )
    _assert_all_refused(checks)

    assert _snapshot() == before
    for path in FILES_AN_ATTACK_MIGHT_WRITE:
        assert not path.exists(), f"an attack wrote {path}"
    if on_postgres():
        assert victim_session.execute("SELECT 1").fetchone() == (1,), "a session was killed"
        victim_session.close()


def test_a_check_query_can_still_read(victim, least_privilege):
    [check] = _plant({"count": f"SELECT count(*) FROM {VICTIM}"})
    [result] = run_checks([check], claim=False)
    assert result.run.status == "ok", result.run.message
    assert result.run.value == 2


def test_authored_sql_is_refused_on_a_superuser_session(settings, needs_postgres):
    settings.SQL_CHECKS_ALLOW_SUPERUSER = False
    settings.SQL_CHECKS_DATABASE_URL = ""
    query = Check.objects.create(name="as-superuser", kind="sql_value", config={"sql": "SELECT 1"})
    ping = Check.objects.create(name="db-ping", kind="database", config={"alias": "default"})
    count = Check.objects.create(
        name="row-count", kind="sql_value", config={"table": "monitoring_check"}
    )
    results = {r.check.name: r.run for r in run_checks([query, ping, count], claim=False)}
    assert results["as-superuser"].status == "critical"
    assert "superuser" in results["as-superuser"].message
    assert "SQL_CHECKS_DATABASE_URL" in results["as-superuser"].message
    # SQL the console composes itself (SELECT 1, a count of a validated table) still runs.
    assert results["db-ping"].status == "ok", results["db-ping"].message
    assert results["row-count"].status == "ok", results["row-count"].message


def test_one_statement_and_read_only_hold_even_for_a_superuser(settings, needs_postgres, victim):
    """With the superuser refusal lifted, the protocol and the read-only transaction still stop
    every multi-statement and writing attack."""
    settings.SQL_CHECKS_ALLOW_SUPERUSER = True
    attacks = {
        name: sql
        for name, sql in _attacks("postgres").items()
        if name not in ("copy to program", "lo_import", "terminate sessions", "set_config")
    }
    before = _snapshot()
    checks = _plant(attacks)
    run_checks(checks, claim=False)
    _assert_all_refused(checks)
    assert _snapshot() == before


def test_query_errors_are_short_and_scrubbed_of_the_dsn_password(settings, needs_postgres):
    db = settings.DATABASES["default"]
    password = "Pw-" + secrets.token_hex(6)
    dsn = f"postgres://{db['USER']}:{password}@127.0.0.1:{db['PORT'] or 5432}/{db['NAME']}"
    check = Check.objects.create(
        name="echoes",
        kind="sql_value",
        config={"dsn": dsn, "sql": f"SELECT '{password}'::int /* {'x' * 500} */"},
    )
    [result] = run_checks([check], claim=False)
    assert result.run.status == "critical"
    assert password not in result.run.message
    assert len(result.run.message) < 300
    assert "invalid input syntax" in result.run.message


def test_sqlite_dsn_attacks_leave_the_file_unchanged(tmp_path, settings):
    path = tmp_path / "watched.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('kept')")
    before = path.read_bytes()
    checks = [
        Check.objects.create(
            name=f"dsn attack {i}",
            kind="sql_value",
            config={"dsn": f"sqlite:///{path}", "sql": sql},
        )
        for i, sql in enumerate(
            [
                "SELECT 1; DELETE FROM t",
                "DELETE FROM t",
                "PRAGMA writable_schema = ON",
                f"ATTACH DATABASE '{tmp_path}/new.sqlite3' AS n",
                "VACUUM",
            ]
        )
    ]
    run_checks(checks, claim=False)
    _assert_all_refused(checks)
    assert path.read_bytes() == before
    assert not (tmp_path / "new.sqlite3").exists()


# --- who may author SQL ----------------------------------------------------------------------


@pytest.fixture
def editor_client(client, django_user_model):
    """Staff who may add and change checks, but not author SQL."""
    user = django_user_model.objects.create_user("editor", password="x" * 12, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="monitoring",
            codename__in=("add_check", "change_check", "view_check"),
        )
    )
    client.force_login(user)
    return client


def _form(**overrides) -> dict:
    data = {
        "name": "authored",
        "kind": "sql_value",
        "component": "",
        "description": "",
        "enabled": "on",
        "config": json.dumps({"sql": "SELECT 1"}),
        "interval_seconds": 60,
        "timeout_seconds": 10,
        "direction": "",
        "debounce": 1,
        "baseline": "null",
    }
    data.update(overrides)
    return data


REFUSAL = "Can author SQL checks"


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("sql_value", {"sql": "SELECT 1"}),
        ("freshness", {"sql": "SELECT now()"}),
        ("database", {"dsn": "postgres://someone@127.0.0.1:5432/test"}),
        ("sql_value", {"database": "default", "sql": "SELECT 2"}),
        ("freshness", {"dsn": "sqlite:///tmp/other.sqlite3", "sql": "SELECT 1"}),
    ],
)
def test_staff_without_the_permission_cannot_add_a_check_that_runs_sql(editor_client, kind, config):
    response = editor_client.post(
        "/admin/monitoring/check/add/", _form(kind=kind, config=json.dumps(config))
    )
    assert response.status_code == 200
    assert REFUSAL in response.content.decode()
    assert not Check.objects.filter(name="authored").exists()


def test_staff_without_the_permission_cannot_change_or_copy_a_query(editor_client):
    check = Check.objects.create(
        name="authored", kind="sql_value", config={"sql": "SELECT 1"}, interval_seconds=60
    )
    url = f"/admin/monitoring/check/{check.pk}/change/"
    for config in ({"sql": "SELECT 2"}, {"sql": "SELECT 1", "dsn": "sqlite:///tmp/x.sqlite3"}):
        response = editor_client.post(url, _form(config=json.dumps(config)))
        assert REFUSAL in response.content.decode()
    # "Save as new" of an existing query is authoring a new one.
    response = editor_client.post(url, _form(name="copy", _saveasnew="Save as new"))
    assert REFUSAL in response.content.decode()
    assert not Check.objects.filter(name="copy").exists()
    # An http check turned into a query is refused as well.
    web = Check.objects.create(name="web", kind="http", config={"url": "http://127.0.0.1:9/"})
    response = editor_client.post(
        f"/admin/monitoring/check/{web.pk}/change/", _form(name="web", kind="sql_value")
    )
    assert REFUSAL in response.content.decode()
    check.refresh_from_db()
    web.refresh_from_db()
    assert check.config == {"sql": "SELECT 1"} and web.kind == "http"
    # Other fields of an existing SQL check stay editable.
    response = editor_client.post(url, _form(component="billing"))
    assert response.status_code == 302, response.content.decode()[:2000]
    check.refresh_from_db()
    assert check.component == "billing" and check.config["sql"] == "SELECT 1"


def test_the_permission_or_superuser_allows_authoring_sql(editor_client, django_user_model):
    editor = django_user_model.objects.get(username="editor")
    editor.user_permissions.add(Permission.objects.get(codename="author_sql_checks"))
    response = editor_client.post("/admin/monitoring/check/add/", _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Check.objects.get(name="authored").config["sql"] == "SELECT 1"
