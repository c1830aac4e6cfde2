"""Kinds that watch data and jobs (freshness, sql_value, queue, heartbeat).

SQL-based kinds run their query through the read-only executor (``monitoring.checks.sql``), where
the database enforces one read-only statement under timeouts. The text screen here only gives
an early, friendly message when a check is loaded; it is not what keeps a query from writing.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from monitoring.checks.sql import SqlTargetError, SqlTimeout, fetch_one, target_vendor
from monitoring.kinds import (
    CheckKind,
    ConfigError,
    Observation,
    check_known_keys,
    register,
    require_str,
)
from monitoring.kinds.common import accept_database_key, duration, validate_database_target
from monitoring.models import CheckStatus
from opsconsole.env import format_duration

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check

DEFAULT_STATEMENT_TIMEOUT = 5.0

# Statements a monitoring query has no business running, wherever they appear (a CTE can
# hide a DELETE behind a leading WITH). REPLACE and COMMENT are left out because they are
# also common function or column names; as statements they fail the leading-keyword test.
_WRITE_WORDS = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "UPSERT",
    "DROP",
    "ALTER",
    "CREATE",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "COPY",
    "INTO",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "VACUUM",
    "REINDEX",
    "CLUSTER",
    "REFRESH",
    "LOCK",
    "CALL",
    "NOTIFY",
    "LISTEN",
    "PREPARE",
    "EXECUTE",
)
_WRITE_RE = re.compile(r"\b(" + "|".join(_WRITE_WORDS) + r")\b", re.IGNORECASE)
_LITERALS_RE = re.compile(
    r"""--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\$(\w*)\$.*?\$\1\$""",
    re.DOTALL,
)
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_SINCE = "{since}"


def write_refusal(sql: str) -> str | None:
    """Why this query is not an acceptable read-only query, or None if it looks like one."""
    # Literals, quoted names and comments cannot run anything: blank them before looking.
    bare = _LITERALS_RE.sub(" ", sql.replace(_SINCE, " "))
    body = bare.strip().rstrip(";").strip()
    if not body:
        return "is empty"
    if ";" in body:
        return "must be one statement (found ';' in the middle)"
    first = body.split(None, 1)[0].upper().lstrip("(")
    if first not in ("SELECT", "WITH", "VALUES"):
        return f"refused: only read-only SELECT queries may run, this one starts with {first}"
    found = _WRITE_RE.search(body)
    if found:
        return (
            f"refused: the query would write or change the database ({found.group(1).upper()}); "
            "SQL checks run read-only SELECT queries only"
        )
    return None


def _validate_sql(config: dict[str, Any], errors: dict[str, str]) -> None:
    sql = require_str(config, "sql", errors)
    if sql:
        problem = write_refusal(sql)
        if problem:
            errors["config.sql"] = problem


def _since_literal(vendor: str, since: datetime) -> str:
    """A timestamp literal in the target's own format; built here, never from check input."""
    utc = since.astimezone(UTC)
    if vendor == "sqlite":
        # Django stores SQLite datetimes as naive UTC text in exactly this form.
        return f"'{utc:%Y-%m-%d %H:%M:%S.%f}'"
    return f"TIMESTAMPTZ '{utc.isoformat()}'"


def _statement_timeout(check: Check) -> float:
    configured = check.config.get("statement_timeout")
    seconds = DEFAULT_STATEMENT_TIMEOUT if configured is None else float(configured)
    # Below the probe's own deadline, so the message says "statement timeout" precisely.
    return max(0.1, min(seconds, check.timeout_seconds))


def _query_first_row(
    check: Check, sql: str, *, authored: bool
) -> tuple[tuple[Any, ...] | None, Observation | None]:
    """(first row, None) or (None, an error observation)."""
    timeout = _statement_timeout(check)
    target = {k: check.config[k] for k in ("alias", "dsn") if k in check.config}
    if _SINCE in sql:
        window = float(check.config.get("since", 3600))
        sql = sql.replace(
            _SINCE,
            _since_literal(target_vendor(target), timezone.now() - timedelta(seconds=window)),
        )
    try:
        return fetch_one(target, sql, timeout=timeout, authored=authored), None
    except SqlTimeout:
        return None, Observation(
            error=f"query timed out after {timeout:g}s (statement timeout); "
            "make it cheaper or raise statement_timeout"
        )
    except SqlTargetError as exc:
        return None, Observation(error=f"query failed: {exc}")


def _as_datetime(raw: Any) -> datetime | None:
    """The newest-row value as an aware UTC datetime: datetimes, ISO text or epoch seconds/ms."""
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if isinstance(raw, date):
        return datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = raw / 1000 if raw > 1e11 else raw  # epoch milliseconds are common too
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return _as_datetime(float(text))
        except ValueError:
            pass
        try:
            return _as_datetime(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


@register
class FreshnessKind(CheckKind):
    """Age of the newest row: ``sql`` returning one timestamp, or ``model`` + ``field``."""

    name = "freshness"
    runs_sql = True
    label = "Data freshness"
    unit = " s"
    default_warn = 2 * 3600
    default_crit = 4 * 3600

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        config = accept_database_key(config, errors)
        check_known_keys(
            config,
            {
                "sql",
                "model",
                "field",
                "alias",
                "dsn",
                "warn_after",
                "crit_after",
                "statement_timeout",
            },
            errors,
        )
        validate_database_target(config, errors)
        normalised = dict(config)
        if "sql" in config and ("model" in config or "field" in config):
            errors["config.sql"] = "give either sql or model + field, not both"
        elif "sql" in config:
            _validate_sql(config, errors)
        elif "model" in config or "field" in config:
            self._validate_model(config, errors)
            if "dsn" in config:
                errors["config.dsn"] = (
                    "model + field reads through a Django alias; use alias, or sql with dsn"
                )
        else:
            errors["config.sql"] = (
                "is required: a query returning the newest timestamp, or model + field"
            )
        for key in ("warn_after", "crit_after", "statement_timeout"):
            value = duration(config, key, errors, None)
            if value is not None:
                normalised[key] = value
        warn = normalised.get("warn_after", self.default_warn)
        crit = normalised.get("crit_after", self.default_crit)
        if warn is not None and crit is not None and warn > crit:
            errors["config.warn_after"] = (
                f"{format_duration(warn)} is later than crit_after {format_duration(crit)}"
            )
        if errors:
            raise ConfigError(errors)
        return normalised

    @staticmethod
    def _validate_model(config: dict[str, Any], errors: dict[str, str]) -> None:
        from django.apps import apps

        label = require_str(config, "model", errors)
        field_name = require_str(config, "field", errors)
        if not label or not field_name:
            return
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            errors["config.model"] = (
                f"no model {label!r}; use app_label.ModelName, e.g. monitoring.CheckRun"
            )
            return
        try:
            field = model._meta.get_field(field_name)
        except Exception:  # FieldDoesNotExist
            errors["config.field"] = f"{label} has no field {field_name!r}"
            return
        if field.get_internal_type() not in (
            "DateTimeField",
            "DateField",
            "IntegerField",
            "BigIntegerField",
            "FloatField",
            "PositiveIntegerField",
            "PositiveBigIntegerField",
        ):
            errors["config.field"] = (
                f"{field_name} is a {field.get_internal_type()}, not a timestamp"
            )

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        return (
            config.get("warn_after", self.default_warn),
            config.get("crit_after", self.default_crit),
            "above",
        )

    @staticmethod
    def query_for(config: dict[str, Any]) -> str:
        if "sql" in config:
            return config["sql"]
        from django.apps import apps

        model = apps.get_model(config["model"])
        column = model._meta.get_field(config["field"]).column
        return f'SELECT max("{column}") FROM "{model._meta.db_table}"'

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        row, failed = _query_first_row(
            check, self.query_for(check.config), authored="sql" in check.config
        )
        if failed:
            return failed
        raw = row[0] if row else None
        if raw is None:
            return Observation(
                status=CheckStatus.CRITICAL,
                message="no rows: the table is empty or the query matched nothing",
                no_data=True,
            )
        newest = _as_datetime(raw)
        if newest is None:
            return Observation(
                error=f"the query returned {raw!r}, which is not a timestamp or epoch seconds"
            )
        age = (timezone.now() - newest).total_seconds()
        details = {"newest": newest.isoformat()}
        if age < 0:
            details["clock_skew_seconds"] = round(-age, 1)
            age = 0.0
        return Observation(
            value=round(age, 1),
            message=f"newest row {format_duration(age)} old ({newest:%Y-%m-%d %H:%M:%S} UTC)",
            details=details,
        )


@register
class SqlValueKind(CheckKind):
    """A number from a read-only query: event counts, row counts, participants."""

    name = "sql_value"
    runs_sql = True
    label = "SQL value"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        config = accept_database_key(config, errors)
        check_known_keys(
            config,
            {"sql", "table", "alias", "dsn", "statement_timeout", "since", "null_as", "unit"},
            errors,
        )
        validate_database_target(config, errors)
        normalised = dict(config)
        if "sql" in config and "table" in config:
            errors["config.table"] = "give either sql or table (a row count), not both"
        elif "table" in config:
            table = require_str(config, "table", errors)
            if table and not _IDENTIFIER_RE.match(table):
                errors["config.table"] = (
                    "must be a plain table name such as monitoring_checkrun or schema.table"
                )
        else:
            _validate_sql(config, errors)
        for key in ("statement_timeout", "since"):
            value = duration(config, key, errors, None)
            if value is not None:
                normalised[key] = value
        if _SINCE not in str(config.get("sql", "")) and "since" in config:
            errors["config.since"] = "only used with a {since} placeholder in sql"
        if "null_as" in config and (
            isinstance(config["null_as"], bool) or not isinstance(config["null_as"], int | float)
        ):
            errors["config.null_as"] = (
                "must be a number (the value to use when the query returns NULL)"
            )
        if "unit" in config and not isinstance(config["unit"], str):
            errors["config.unit"] = "must be a string such as ' events'"
        if errors:
            raise ConfigError(errors)
        return normalised

    def unit_for(self, config: dict[str, Any]) -> str:
        return config.get("unit", "")

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        config = check.config
        if "table" in config:
            quoted = ".".join(f'"{part}"' for part in config["table"].split("."))
            sql = f"SELECT count(*) FROM {quoted}"
        else:
            sql = config["sql"]
        row, failed = _query_first_row(check, sql, authored="sql" in config)
        if failed:
            return failed
        raw = row[0] if row else None
        if raw is None:
            if "null_as" not in config:
                return Observation(
                    status=CheckStatus.CRITICAL,
                    message="the query returned no value (no rows or NULL); "
                    "set null_as to treat that as a number",
                    no_data=True,
                )
            raw = config["null_as"]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return Observation(error=f"the query returned {raw!r}, which is not a number")
        shown = f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
        label = f"rows in {config['table']}" if "table" in config else "value"
        # A count of nothing (events in the last hour on a new install) is "no data yet".
        return Observation(
            value=value, message=f"{label} {shown}{self.unit_for(config)}", no_data=value == 0
        )
