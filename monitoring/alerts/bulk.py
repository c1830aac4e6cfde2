"""One-statement inserts of many rows.

``bulk_create`` splits into batches on SQLite (999 parameters per statement), so the number
of statements of an escalate pass would grow with the number of alerts. Here the rows travel
as one JSON parameter and the database unpacks them (``json_each`` on SQLite,
``jsonb_to_recordset`` on PostgreSQL): one statement whatever the count.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connection, models


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def insert_rows(
    model: type[models.Model], rows: list[dict[str, Any]], *, ignore_conflicts: bool = False
) -> None:
    """Inserts ``rows`` (dicts of concrete field names, e.g. ``alert_id``) in one statement.

    Every row must give the same keys; model defaults are not applied.
    """
    if not rows:
        return
    names = list(rows[0])
    fields = [
        model._meta.get_field(name.removesuffix("_id") if name.endswith("_id") else name)
        for name in names
    ]
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
