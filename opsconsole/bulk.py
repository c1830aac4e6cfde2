"""One-statement inserts of many rows.

``bulk_create`` splits into batches on SQLite (999 parameters per statement), so the number
of statements of an escalate pass would grow with the number of alerts. Here the rows travel
as one JSON parameter and the database unpacks them (``json_each`` on SQLite,
``jsonb_to_recordset`` on PostgreSQL): one statement whatever the count.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

from django.db import connection, models
from django.utils import timezone


def _json_default(value: Any) -> Any:
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _with_defaults(
    model: type[models.Model], rows: list[dict[str, Any]]
) -> tuple[list[str], list[models.Field], list[dict[str, Any]]]:
    """(names, fields, rows) with the model's defaults filled in for the columns the rows leave
    out, as ``Model.objects.create`` would. A NOT NULL column with neither a value nor a default
    is an error here, not a NULL the database may or may not refuse."""
    given = list(rows[0])
    fields = [model._meta.get_field(name.removesuffix("_id")) for name in given]
    missing: list[models.Field] = []
    stamped: dict[str, Any] = {}
    # One moment for every auto_now(_add) column of the statement: the time is taken once.
    now = timezone.now()
    for field in model._meta.concrete_fields:
        if field in fields or field.primary_key:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            stamped[field.attname] = now if isinstance(field, models.DateTimeField) else now.date()
            missing.append(field)
        elif field.has_default():
            missing.append(field)
        elif not field.null:
            raise ValueError(
                f"insert_rows({model.__name__}): no value for {field.attname} (NOT NULL, no default)"
            )
    if not missing:
        return given, fields, rows
    static = {
        f.attname: f.get_default()
        for f in missing
        if f.attname not in stamped and not callable(f.default)
    } | stamped
    per_row = [f for f in missing if f.attname not in stamped and callable(f.default)]
    filled = [{**row, **static, **{f.attname: f.get_default() for f in per_row}} for row in rows]
    return given + [f.attname for f in missing], fields + missing, filled


def insert_rows(
    model: type[models.Model], rows: list[dict[str, Any]], *, ignore_conflicts: bool = False
) -> None:
    """Inserts ``rows`` (dicts of concrete field names, e.g. ``alert_id``) in one statement.

    Every row must give the same keys; the model's defaults fill the columns they leave out.
    """
    if not rows:
        return
    names, fields, rows = _with_defaults(model, rows)
    columns = [field.column for field in fields]
    table = connection.ops.quote_name(model._meta.db_table)
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    if connection.vendor == "postgresql":
        records = [
            {col: row[name] for col, name in zip(columns, names, strict=True)} for row in rows
        ]
        typed = ", ".join(
            f"{connection.ops.quote_name(c)} {_pg_type(f)}"
            for c, f in zip(columns, fields, strict=True)
        )
        sql = (
            f"INSERT INTO {table} ({quoted}) SELECT {quoted} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS x({typed})"
        )
        if ignore_conflicts:
            sql += " ON CONFLICT DO NOTHING"
    else:
        records = [
            [
                field.get_db_prep_value(row[name], connection)
                for field, name in zip(fields, names, strict=True)
            ]
            for row in rows
        ]
        picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
        verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
        sql = f"{verb} INTO {table} ({quoted}) SELECT {picks} FROM json_each(%s)"
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(records, default=_json_default)])


def _pg_type(field: models.Field) -> str:
    if isinstance(field, models.ForeignKey):
        return field.target_field.rel_db_type(connection)
    return field.db_type(connection)
