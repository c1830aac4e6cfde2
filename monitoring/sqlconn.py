"""Connections to the databases that SQL-based checks look at.

A target is a Django alias (``{"alias": "default"}``) or a DSN (``{"dsn": "postgres://…"}``).
With ``read_only`` the query runs in a read-only transaction under a statement timeout on
PostgreSQL, and through a ``mode=ro`` connection on SQLite, so a check can never write.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

import psycopg
from django.db import DatabaseError, connections


class SqlTargetError(Exception):
    """The target could not be reached or the query failed; the message says which."""


class SqlTimeout(SqlTargetError):
    pass


def _sqlite_path(dsn: str) -> str:
    parsed = urlparse(dsn)
    path = unquote(parsed.path)
    return "/" + path.lstrip("/") if dsn.startswith("sqlite:////") else path.lstrip("/")


@contextlib.contextmanager
def _sqlite_cursor(path: str, timeout: float, read_only: bool) -> Iterator[Any]:
    uri = f"file:{path}?mode={'ro' if read_only else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise SqlTargetError(f"cannot open {path}: {exc}") from exc
    try:
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        # SQLite has no statement timeout: abort from the progress handler instead.
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        cursor = conn.cursor()
        try:
            yield cursor
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise SqlTimeout(f"query timed out after {timeout:g}s") from exc
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise SqlTargetError(f"refused: the query tried to write ({exc})") from exc
            raise SqlTargetError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise SqlTargetError(str(exc)) from exc
    finally:
        conn.close()


@contextlib.contextmanager
def _postgres_cursor(dsn: str, timeout: float, read_only: bool) -> Iterator[Any]:
    try:
        conn = psycopg.connect(
            dsn,
            connect_timeout=max(1, math.ceil(timeout)),
            options=f"-c statement_timeout={int(timeout * 1000)}",
            autocommit=False,
        )
    except psycopg.Error as exc:
        raise SqlTargetError(str(exc).strip()) from exc
    try:
        with conn.cursor() as cursor:
            if read_only:
                cursor.execute("SET TRANSACTION READ ONLY")
            try:
                yield cursor
            except psycopg.errors.QueryCanceled as exc:
                raise SqlTimeout(f"query timed out after {timeout:g}s (statement_timeout)") from exc
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                raise SqlTargetError(f"refused: the query tried to write ({exc})") from exc
            except psycopg.Error as exc:
                raise SqlTargetError(str(exc).strip()) from exc
    finally:
        conn.rollback()
        conn.close()


@contextlib.contextmanager
def _alias_cursor(alias: str, timeout: float, read_only: bool) -> Iterator[Any]:
    connection = connections[alias]
    if connection.vendor == "sqlite":
        with _sqlite_cursor(connection.settings_dict["NAME"], timeout, read_only) as cursor:
            yield cursor
        return
    if connection.vendor != "postgresql":
        raise SqlTargetError(f"database alias {alias!r}: unsupported vendor {connection.vendor}")
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        raise SqlTargetError(str(exc).strip()) from exc
    conn = connection.connection  # the raw psycopg connection of this thread
    try:
        # A transaction of our own on this thread's connection, so SET LOCAL stays local.
        with conn.transaction(force_rollback=True), conn.cursor() as cursor:
            if read_only:
                cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
            try:
                yield cursor
            except psycopg.errors.QueryCanceled as exc:
                raise SqlTimeout(f"query timed out after {timeout:g}s (statement_timeout)") from exc
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                raise SqlTargetError(f"refused: the query tried to write ({exc})") from exc
            except psycopg.Error as exc:
                raise SqlTargetError(str(exc).strip()) from exc
    except psycopg.OperationalError as exc:
        raise SqlTargetError(str(exc).strip()) from exc


def target_vendor(config: dict[str, Any]) -> str:
    """``sqlite`` or ``postgresql``: which SQL dialect a query against this target speaks."""
    dsn = config.get("dsn")
    if dsn:
        return "sqlite" if dsn.startswith("sqlite:") else "postgresql"
    return connections[config.get("alias", "default")].vendor


@contextlib.contextmanager
def open_target(
    config: dict[str, Any], *, timeout: float, read_only: bool = False
) -> Iterator[Any]:
    """A DB-API cursor on the check's target; errors come out as SqlTargetError."""
    dsn = config.get("dsn")
    if dsn and dsn.startswith("sqlite:"):
        with _sqlite_cursor(_sqlite_path(dsn), timeout, read_only) as cursor:
            yield cursor
    elif dsn:
        with _postgres_cursor(dsn, timeout, read_only) as cursor:
            yield cursor
    else:
        with _alias_cursor(config.get("alias", "default"), timeout, read_only) as cursor:
            yield cursor
