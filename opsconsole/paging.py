"""Keyset paging for the staff pages: the next page starts after the last row shown, so page
500 costs what page 1 costs (an OFFSET would read and drop every row before it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet


@dataclass
class KeysetPage:
    items: list[Any]
    next_cursor: str | None


def _encode(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def keyset(
    queryset: QuerySet, cursor: str | None, *, field: str, descending: bool, per_page: int = 50
) -> KeysetPage:
    """Rows ordered by (``field``, pk); ``cursor`` is ``<field value>~<pk>`` of the last row
    seen. A malformed cursor starts from the top rather than failing the page."""
    meta = queryset.model._meta
    sign = "-" if descending else ""
    queryset = queryset.order_by(f"{sign}{field}", f"{sign}pk")
    if cursor:
        raw_value, _, raw_pk = cursor.rpartition("~")
        try:
            value = meta.get_field(field).to_python(raw_value)
            pk = meta.pk.to_python(raw_pk)
        except ValidationError:
            value = pk = None
        if value is not None and pk is not None:
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
