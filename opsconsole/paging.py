"""Keyset paging for every list, pages and API alike: the next page starts after the last row
shown, so page 500 costs what page 1 costs (an OFFSET would read and drop every row before it),
and rows added during a walk never shift the pages still to come.

A cursor is ``<field value>~<pk>`` of the last row seen; the API's are the same pair
base64-encoded (``opaque``), so that a client can put them in a URL without quoting."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from opsconsole.api import BadRequest, int_param


@dataclass
class KeysetPage:
    items: list[Any]
    next_cursor: str | None


# Cursors are short; a longer one was not made here and is not worth parsing.
MAX_CURSOR_LENGTH = 200


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return value.hex
    return str(value)


def encode_cursor(value: Any, pk: Any, *, opaque: bool = False) -> str:
    """The cursor of a row whose ordering field holds ``value``."""
    if opaque:
        raw = f"{_text(value)}|{_text(pk)}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{_text(value)}~{pk}"


def decode_cursor(
    queryset: QuerySet, cursor: str, field: str, *, opaque: bool = False, param: str = "cursor"
) -> tuple[Any, Any]:
    """(field value, pk) of a cursor made by ``encode_cursor``; anything else is a 400 naming
    ``param``."""
    meta = queryset.model._meta
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValidationError("too long")
        if opaque:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            raw_value, separator, raw_pk = text.rpartition("|")
        else:
            raw_value, separator, raw_pk = cursor.rpartition("~")
        if not separator:
            raise ValidationError("malformed")
        value = meta.get_field(field).to_python(raw_value)
        pk = meta.pk.to_python(raw_pk)
        if value is None or pk is None:
            raise ValidationError("empty")
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValidationError("no offset: not made here")
            # UTC as stored: PostgreSQL refuses offsets beyond ±15:59, and an offset can push
            # year 1 or 9999 out of the datetime range (OverflowError).
            value = value.astimezone(UTC)
    except (ValidationError, ValueError, OverflowError):  # binascii and unicode errors too
        raise BadRequest("invalid cursor", {param: "not a cursor returned by this list"}) from None
    return value, pk


def keyset(
    queryset: QuerySet,
    cursor: str | None,
    *,
    field: str,
    descending: bool,
    per_page: int = 50,
    opaque: bool = False,
    param: str = "cursor",
) -> KeysetPage:
    """Rows ordered by (``field``, pk), after the row ``cursor`` names. A cursor this function
    did not make is refused with a 400 (BadRequest naming ``param``)."""
    sign = "-" if descending else ""
    queryset = queryset.order_by(f"{sign}{field}", f"{sign}pk")
    if cursor:
        value, pk = decode_cursor(queryset, cursor, field, opaque=opaque, param=param)
        op = "lt" if descending else "gt"
        queryset = queryset.filter(
            Q(**{f"{field}__{op}": value}) | Q(**{field: value, f"pk__{op}": pk})
        )
    rows = list(queryset[: per_page + 1])
    next_cursor = None
    if len(rows) > per_page:
        rows = rows[:per_page]
        last = rows[-1]
        next_cursor = encode_cursor(getattr(last, field), last.pk, opaque=opaque)
    return KeysetPage(rows, next_cursor)


def latest_first(
    queryset: QuerySet, cursor: str | None, per_page: int = 50, field: str = "created_at"
) -> KeysetPage:
    return keyset(queryset, cursor, field=field, descending=True, per_page=per_page)


def parse_limit(
    raw: str | None, *, name: str = "limit", default: int = 50, maximum: int = 200
) -> int:
    """A page size from a query parameter or an option: 1 to ``maximum`` in ASCII digits, or a
    400 naming ``name``."""
    return int_param(raw, name, default=default, minimum=1, maximum=maximum, error="invalid limit")
