"""Keyset paging for the staff pages: the next page starts after the last row shown, so page
500 costs what page 1 costs (an OFFSET would read and drop every row before it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import BadRequest, ValidationError
from django.db.models import Q, QuerySet


@dataclass
class KeysetPage:
    items: list[Any]
    next_cursor: str | None


def _encode(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


# Cursors are short; a longer one was not made here and is not worth parsing.
MAX_CURSOR_LENGTH = 200


def _decode(queryset: QuerySet, cursor: str, field: str) -> tuple[Any, Any]:
    meta = queryset.model._meta
    raw_value, separator, raw_pk = cursor.rpartition("~")
    try:
        if not separator or len(cursor) > MAX_CURSOR_LENGTH:
            raise ValidationError("malformed")
        value = meta.get_field(field).to_python(raw_value)
        pk = meta.pk.to_python(raw_pk)
        if value is None or pk is None:
            raise ValidationError("empty")
        if isinstance(value, datetime) and value.tzinfo is not None:
            # UTC as stored: PostgreSQL refuses offsets beyond ±15:59, and an offset can push
            # year 1 or 9999 out of the datetime range (OverflowError).
            value = value.astimezone(UTC)
    except (ValidationError, ValueError, OverflowError):
        raise BadRequest("not a page cursor of this list") from None
    return value, pk


def keyset(
    queryset: QuerySet, cursor: str | None, *, field: str, descending: bool, per_page: int = 50
) -> KeysetPage:
    """Rows ordered by (``field``, pk); ``cursor`` is ``<field value>~<pk>`` of the last row
    seen. A cursor this function did not make is refused with a 400 (BadRequest)."""
    sign = "-" if descending else ""
    queryset = queryset.order_by(f"{sign}{field}", f"{sign}pk")
    if cursor:
        value, pk = _decode(queryset, cursor, field)
        op = "lt" if descending else "gt"
        queryset = queryset.filter(
            Q(**{f"{field}__{op}": value}) | Q(**{field: value, f"pk__{op}": pk})
        )
    rows = list(queryset[: per_page + 1])
    next_cursor = None
    if len(rows) > per_page:
        rows = rows[:per_page]
        last = rows[-1]
        next_cursor = f"{_encode(getattr(last, field))}~{last.pk}"
    return KeysetPage(rows, next_cursor)


def latest_first(
    queryset: QuerySet, cursor: str | None, per_page: int = 50, field: str = "created_at"
) -> KeysetPage:
    return keyset(queryset, cursor, field=field, descending=True, per_page=per_page)
