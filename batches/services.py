"""Creating, listing and summarising batches; shared by the API, the CLI and the admin."""

from __future__ import annotations

import math
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from batches.events import count_created
from batches.executor import enqueue_batch, tasks_for
from batches.models import BatchItem, BatchOperation, BatchStatus, ItemStatus
from batches.operations import Operation, get_operation, operation_names
from opsconsole.api import BadRequest
from opsconsole.idempotency import claim_idempotency_key
from opsconsole.paging import keyset
from opsconsole.redaction import mask_config

MAX_CREATOR_LENGTH = 100
MAX_KEY_LENGTH = 200
MAX_JSON_DEPTH = 32
INT64 = 2**63


def _unstorable(value: Any, depth: int = 0) -> str | None:
    """Why a JSON value cannot be stored as-is (NUL characters, lone surrogates, NaN, depth)."""
    if depth > MAX_JSON_DEPTH:
        return f"is nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an invalid unicode character"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "contains a non-finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return "contains a number too large to store"
    if isinstance(value, list):
        for item in value:
            if reason := _unstorable(item, depth + 1):
                return reason
    if isinstance(value, dict):
        for key, item in value.items():
            if reason := _unstorable(key, depth + 1) or _unstorable(item, depth + 1):
                return reason
    return None


def _control_character(key: str) -> str | None:
    """The first control character (Unicode category Cc: C0 with NUL, DEL, C1) of a key, as
    U+XXXX. Keys go into URLs, headers, logs and terminals, where such characters split or
    disguise what an operator reads."""
    for char in key:
        if unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X}"
    return None


ALLOWED_FIELDS = ("operation", "creator", "items", "payload")


def validate_batch(data: Any) -> tuple[str, str, list[str], dict[str, Any]]:
    """(operation, creator, item keys, normalised payload) or BadRequest."""
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", {"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    for field_name in data:
        if field_name not in ALLOWED_FIELDS:
            errors[str(field_name)[:100]] = f"unknown field; allowed: {', '.join(ALLOWED_FIELDS)}"

    operation_name = data.get("operation")
    operation = None
    if operation_name is None:
        errors["operation"] = f"is required: one of {', '.join(operation_names())}"
    elif not isinstance(operation_name, str) or get_operation(operation_name) is None:
        errors["operation"] = f"unknown operation; known: {', '.join(operation_names())}"
    else:
        operation = get_operation(operation_name)

    creator = data.get("creator")
    if creator is None:
        errors["creator"] = "is required"
    elif not isinstance(creator, str) or not creator.strip():
        errors["creator"] = "must be a non-empty string"
    elif len(creator) > MAX_CREATOR_LENGTH:
        errors["creator"] = f"must be at most {MAX_CREATOR_LENGTH} characters"
    elif reason := _unstorable(creator):
        errors["creator"] = reason

    items = data.get("items")
    keys: list[str] = []
    if items is None:
        errors["items"] = "is required: a non-empty list of item keys (strings or integers)"
    elif not isinstance(items, list) or not items:
        errors["items"] = "must be a non-empty list of item keys (strings or integers)"
    else:
        limit = settings.BATCH_OPERATION_MAX_SIZE
        if len(items) > limit:
            raise BadRequest(
                f"too many items: {len(items)}; "
                f"at most {limit} per batch (BATCH_OPERATION_MAX_SIZE)",
                {"items": f"at most {limit} items"},
                status=413,
            )
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            where = f"items[{index}]"
            if isinstance(item, bool) or not isinstance(item, int | str):
                errors[where] = "must be a string or an integer"
            elif isinstance(item, int) and not -INT64 <= item < INT64:
                errors[where] = "integer out of the 64-bit range"
            elif isinstance(item, str) and not item.strip():
                errors[where] = "must not be empty"
            elif isinstance(item, str) and len(item) > MAX_KEY_LENGTH:
                errors[where] = f"must be at most {MAX_KEY_LENGTH} characters"
            elif isinstance(item, str) and (char := _control_character(item)):
                errors[where] = (
                    f"key {ascii(item)[:80]} contains the control character {char}; "
                    "keys are printable text"
                )
            elif isinstance(item, str) and (reason := _unstorable(item)):
                errors[where] = reason
            else:
                key = str(item)
                if key in seen:
                    errors[where] = f"duplicate key {key!r} (also items[{seen[key]}])"
                else:
                    seen[key] = index
                    keys.append(key)
            if len(errors) >= 20:
                break

    payload = data.get("payload", {})
    normalised: dict[str, Any] = {}
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        errors["payload"] = "must be an object"
    elif reason := _unstorable(payload):
        errors["payload"] = reason
    elif operation is not None:
        normalised, payload_errors = operation.validate_payload(payload)
        errors.update(payload_errors)
    if errors:
        raise BadRequest("invalid batch", errors)
    return operation_name, creator, keys, normalised


def registered_operation(name: str) -> Operation:
    """The operation a URL names (``POST /api/batches/<operation>/``), or 404 listing the
    registered ones."""
    operation = get_operation(name)
    if operation is None:
        known = ", ".join(operation_names())
        raise BadRequest(
            f"unknown operation; known: {known}",
            {"operation": f"no operation named {name[:50]!r}; known: {known}"},
            status=404,
        )
    return operation


def validate_for_operation(operation: Operation, data: Any) -> dict[str, Any]:
    """The body of ``POST /api/batches/<operation>/`` (``{creator, items, payload}``) as the
    generic endpoint's body: the operation comes from the URL, and a body that names another
    one is refused rather than silently overridden."""
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", {"body": "must be a JSON object"})
    named = data.get("operation", operation.name)
    if named != operation.name:
        raise BadRequest(
            "invalid batch",
            {"operation": f"the URL names the operation {operation.name!r}; leave it out here"},
        )
    return {**data, "operation": operation.name}


def create_batch(data: Any, now: datetime | None = None) -> BatchOperation:
    """Validates everything first, then writes the batch and its items in one transaction and
    queues it once committed. If the broker is down the batch stays pending and recovery
    queues it later."""
    operation_name, creator, keys, payload = validate_batch(data)
    now = now or timezone.now()
    with transaction.atomic():
        claim_idempotency_key()  # committed with these rows, or not at all
        batch = BatchOperation.objects.create(
            operation=operation_name,
            creator=creator,
            payload=payload,
            total_items=len(keys),
            created_at=now,
            heartbeat_at=now,
        )
        BatchItem.objects.bulk_create(
            [BatchItem(batch=batch, key=key, next_attempt_at=now, updated_at=now) for key in keys],
            batch_size=1000,
        )
        count_created(operation_name)
        transaction.on_commit(lambda: enqueue_batch(batch.pk, tasks_for(len(keys))))
    return batch


# --- listing ---------------------------------------------------------------------------------


@dataclass
class Page:
    batches: list[BatchOperation]
    next_cursor: str | None


def list_batches(
    *,
    creator: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Newest first, by keyset on (created_at, id): the cost of a page does not grow with its
    depth, and batches created during a walk never shift the pages still to come."""
    query: QuerySet[BatchOperation] = BatchOperation.objects.all()
    if creator is not None:
        query = query.filter(creator=creator)
    if status is not None:
        if status not in BatchStatus.values:
            raise BadRequest(
                "invalid status", {"status": f"must be one of {', '.join(BatchStatus.values)}"}
            )
        query = query.filter(status=status)
    page = keyset(query, cursor, field="created_at", descending=True, per_page=limit, opaque=True)
    return Page(page.items, page.next_cursor)


def batch_summary(batch: BatchOperation) -> dict[str, Any]:
    return {
        "batchId": str(batch.id),
        "operation": batch.operation,
        "creator": batch.creator,
        "status": batch.status,
        "totalItems": batch.total_items,
        "succeededItems": batch.succeeded_items,
        "failedItems": batch.failed_items,
        "pendingItems": batch.pending_items,
        "createdAt": batch.created_at.isoformat(),
        "startedAt": batch.started_at.isoformat() if batch.started_at else None,
        "finishedAt": batch.finished_at.isoformat() if batch.finished_at else None,
        "error": batch.error or None,
    }


def batch_detail(
    batch: BatchOperation, items_limit: int = 100, items_cursor: str | None = None
) -> dict[str, Any]:
    """The summary plus one page of items in creation order (``nextItemsCursor`` for more)."""
    page = keyset(
        batch.items.all(),
        items_cursor,
        field="id",
        descending=False,
        per_page=items_limit,
        param="items_cursor",
    )
    return {
        **batch_summary(batch),
        "payload": mask_config(batch.payload),
        "items": [item.as_json() for item in page.items],
        "nextItemsCursor": page.next_cursor,
    }


def get_batch(batch_id: str) -> BatchOperation:
    try:
        parsed = uuid.UUID(str(batch_id))
    except ValueError:
        raise BadRequest(
            "unknown batch", {"batchId": "no batch with this id"}, status=404
        ) from None
    batch = BatchOperation.objects.filter(pk=parsed).first()
    if batch is None:
        raise BadRequest("unknown batch", {"batchId": "no batch with this id"}, status=404)
    return batch


def open_items(batch: BatchOperation) -> int:
    return batch.items.filter(status__in=(ItemStatus.PENDING, ItemStatus.RUNNING)).count()
