"""The read-only SQL executor: how checks query a database.

A target is a Django alias (``{"alias": "default"}``) or a DSN (``{"dsn": "postgres://…"}``).
What keeps a check's query from writing is the database itself, never a reading of its text:

- PostgreSQL: every query gets a session of its own, opened with
  ``default_transaction_read_only=on`` and statement, lock and idle-in-transaction timeouts as
  startup options; the query runs inside a ``READ ONLY`` transaction that is always rolled back,
  and it is sent as a prepared statement, which the server refuses to hold more than one
  statement (so ``COMMIT``, ``SET`` or anything after a ``;`` never runs). A superuser can do
  what no transaction mode stops (``COPY … TO PROGRAM``, ``lo_import``), so a session that turns
  out to be a superuser's is refused for authored SQL unless ``SQL_CHECKS_ALLOW_SUPERUSER``.
- SQLite: a ``mode=ro`` connection with ``query_only`` and an authorizer that allows reads
  only; the sqlite3 module executes exactly one statement.

``SQL_CHECKS_DATABASE_URL`` replaces the ``default`` alias's credentials, so checks against
the console's own data can run as a least-privilege role (docs/checks.md has the recipe).
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections

from opsconsole.env import parse_database_url
from opsconsole.redaction import redact

# Error texts quoted in check messages are cut to this many characters.
ERROR_EXCERPT_CHARS = 200

# libpq parameters worth carrying over from a Django alias's OPTIONS; Django-only keys
# (pool, isolation_level, server_side_binding, ...) are not connection parameters.
_LIBPQ_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "service",
    "passfile",
    "target_session_attrs",
)

# SQLite authorizer actions a read needs; everything else (writes, PRAGMA, ATTACH, DDL,
# transactions) is denied by the engine while the statement is compiled.
_SQLITE_READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}


class SqlTargetError(Exception):
    """The target could not be reached or the query failed; the message says which."""


class SqlTimeout(SqlTargetError):
    pass


@dataclass(frozen=True)
class SqlTarget:
    """Where a query goes: a SQLite file or PostgreSQL connection parameters."""

    vendor: str  # "sqlite" or "postgresql"
    path: str = ""
    conninfo: str = ""
    params: tuple[tuple[str, str], ...] = ()
    # Values to scrub from any error text (passwords of the DSN or alias).
    secrets: tuple[str, ...] = ()


def _from_settings_dict(db: dict[str, Any]) -> SqlTarget:
    if "sqlite" in db["ENGINE"]:
        return SqlTarget("sqlite", path=str(db["NAME"]))
    if "postgresql" not in db["ENGINE"]:
        raise SqlTargetError(f"unsupported database engine {db['ENGINE']}")
    params = {
        "dbname": db.get("NAME") or "",
        "user": db.get("USER") or "",
        "password": db.get("PASSWORD") or "",
        "host": db.get("HOST") or "",
        "port": str(db.get("PORT") or ""),
    }
    options = db.get("OPTIONS") or {}
    params.update({k: str(options[k]) for k in _LIBPQ_OPTIONS if k in options})
    return SqlTarget(
        "postgresql",
        params=tuple((k, v) for k, v in params.items() if v),
        secrets=tuple(s for s in (params["password"],) if s),
    )


def resolve_target(config: dict[str, Any]) -> SqlTarget:
    """The target a check's config names; the ``default`` alias honours SQL_CHECKS_DATABASE_URL."""
    dsn = config.get("dsn")
    if dsn:
        if dsn.startswith("sqlite:"):
            return _from_settings_dict(parse_database_url(dsn, "dsn"))
        password = _dsn_password(dsn)
        return SqlTarget("postgresql", conninfo=dsn, secrets=(password,) if password else ())
    alias = config.get("alias", "default")
    if alias == "default" and settings.SQL_CHECKS_DATABASE_URL:
        return _from_settings_dict(
            parse_database_url(settings.SQL_CHECKS_DATABASE_URL, "SQL_CHECKS_DATABASE_URL")
        )
    if alias not in settings.DATABASES:
        raise SqlTargetError(f"unknown database alias {alias!r}")
    return _from_settings_dict(connections[alias].settings_dict)


def _dsn_password(dsn: str) -> str:
    try:
        return psycopg.conninfo.conninfo_to_dict(dsn).get("password") or ""
    except psycopg.ProgrammingError:
        return ""


def target_vendor(config: dict[str, Any]) -> str:
    """``sqlite`` or ``postgresql``: which SQL dialect a query against this target speaks."""
    dsn = config.get("dsn")
    if dsn:
        return "sqlite" if dsn.startswith("sqlite:") else "postgresql"
    return connections[config.get("alias", "default")].vendor


def excerpt(text: str, secrets: tuple[str, ...] = ()) -> str:
    """The first line of an error text, scrubbed of secrets and cut short for a check message."""
    first = redact(str(text).strip(), secrets).splitlines()[0] if str(text).strip() else ""
    if len(first) > ERROR_EXCERPT_CHARS:
        first = first[: ERROR_EXCERPT_CHARS - 1] + "…"
    return first


def fetch_one(
    config: dict[str, Any], sql: str, *, timeout: float, authored: bool = True
) -> tuple[Any, ...] | None:
    """The first row of one read-only statement, or None when it returns no row.

    ``authored`` is true for SQL written by a person (a check's ``sql``); SQL the console
    composes itself (``SELECT 1``, a count of a validated table name) passes False, which only
    lifts the superuser refusal. Errors come out as SqlTargetError with a short, scrubbed text.
    """
    _, rows = fetch_rows(config, sql, timeout=timeout, limit=1, authored=authored)
    return rows[0] if rows else None


def fetch_rows(
    config: dict[str, Any], sql: str, *, timeout: float, limit: int, authored: bool = True
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, up to ``limit`` rows) of one read-only statement, under the same rules
    as ``fetch_one`` (the health report's recent-rows tables use it)."""
    target = resolve_target(config)
    if target.vendor == "sqlite":
        return _sqlite_fetch(target, sql, timeout, limit)
    return _postgres_fetch(target, sql, timeout, authored, limit)


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_authorizer(action: int, *args: Any) -> int:
    return sqlite3.SQLITE_OK if action in _SQLITE_READ_ACTIONS else sqlite3.SQLITE_DENY


def _sqlite_fetch(
    target: SqlTarget, sql: str, timeout: float, limit: int
) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        conn = sqlite3.connect(f"file:{target.path}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise SqlTargetError(f"cannot open {target.path}: {excerpt(str(exc))}") from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_sqlite_authorizer)
        # SQLite has no statement timeout: abort from the progress handler instead.
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        try:
            cursor = conn.execute(sql)
            columns = [column[0] for column in cursor.description or ()]
            return columns, cursor.fetchmany(limit)
        except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:
            if "one statement" in str(exc):
                raise SqlTargetError("refused: a check runs exactly one SQL statement") from exc
            raise SqlTargetError(excerpt(str(exc))) from exc
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "interrupted" in text:
                raise SqlTimeout(f"query timed out after {timeout:g}s") from exc
            if "not authorized" in text or "readonly" in text or "read-only" in text:
                raise SqlTargetError(f"refused: only reads are allowed ({excerpt(text)})") from exc
            raise SqlTargetError(excerpt(text)) from exc
    finally:
        conn.close()


# --- PostgreSQL ------------------------------------------------------------------------------


def _session_options(timeout: float) -> str:
    statement_ms = max(1, int(timeout * 1000))
    return " ".join(
        f"-c {name}={value}"
        for name, value in (
            ("default_transaction_read_only", "on"),
            ("statement_timeout", statement_ms),
            ("lock_timeout", statement_ms),
            # A session left idle in its transaction (a stuck worker) ends by itself.
            ("idle_in_transaction_session_timeout", statement_ms + 5000),
        )
    )


def _postgres_error(exc: psycopg.Error, target: SqlTarget, timeout: float) -> SqlTargetError:
    text = excerpt(str(exc), target.secrets)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return SqlTimeout(f"query timed out after {timeout:g}s (statement_timeout)")
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return SqlTimeout(f"query waited for a lock longer than {timeout:g}s (lock_timeout)")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction | psycopg.errors.ActiveSqlTransaction):
        return SqlTargetError(f"refused: the query tried to write ({text})")
    if "multiple commands" in text:
        return SqlTargetError("refused: a check runs exactly one SQL statement")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return SqlTargetError(f"refused by the database: {text}")
    return SqlTargetError(text)


def _postgres_fetch(
    target: SqlTarget, sql: str, timeout: float, authored: bool, limit: int
) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        conn = psycopg.connect(
            target.conninfo,
            **dict(target.params),
            connect_timeout=max(1, math.ceil(timeout)),
            options=_session_options(timeout),
            application_name="opsconsole-check",
            autocommit=False,
        )
    except psycopg.Error as exc:
        raise SqlTargetError(excerpt(str(exc), target.secrets)) from exc
    try:
        if authored and conn.info.parameter_status("is_superuser") == "on":
            if not settings.SQL_CHECKS_ALLOW_SUPERUSER:
                raise SqlTargetError(
                    f"refused: this check connects as superuser {conn.info.user!r}, which no "
                    "read-only mode can contain; set SQL_CHECKS_DATABASE_URL (or the check's "
                    "dsn) to a read-only role, see docs/checks.md"
                )
        conn.read_only = True  # BEGIN READ ONLY, on top of the session default
        with conn.cursor() as cursor:
            # prepare=True: the extended protocol's Parse refuses a second statement.
            cursor.execute(sql, prepare=True)
            if cursor.description is None:
                raise SqlTargetError(
                    f"the statement returned no rows ({cursor.statusmessage}); "
                    "a check runs one SELECT query"
                )
            return [column.name for column in cursor.description], cursor.fetchmany(limit)
    except psycopg.Error as exc:
        raise _postgres_error(exc, target, timeout) from exc
    finally:
        # Rolled back by closing: a COPY or a broken protocol state may refuse a ROLLBACK.
        conn.close()
