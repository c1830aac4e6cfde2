"""Backlog operations: add, process, inspect. Commands, the API, the admin and the batch
operation all go through these functions."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import Count, Exists, F, Min, OuterRef, QuerySet
from django.utils import timezone

from backlog.handlers import (
    HandlerMissing,
    HandlerSet,
    delivery_for,
    describe_handler,
    handler_setting,
)
from backlog.models import DEFAULT_SOURCE, BacklogEntry, BacklogStatus
from opsconsole.api import BadRequest
from opsconsole.excerpt import error_excerpt
from opsconsole.idempotency import claim_idempotency_key
from opsconsole.logging import job_context
from opsconsole.redaction import redact, secret_values
from opsconsole.retry import backoff_seconds
from opsconsole.timeouts import backlog_claim_refresh, backlog_run_budget

logger = logging.getLogger(__name__)

SOURCE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
KEY_MAX, REASON_MAX = 255, 500
CLAIM_CHUNK = 100
BULK_CHUNK = 2000


# --- validation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntrySpec:
    source: str
    key: str
    reason: str = ""
    payload: dict | None = None


def validate_entry(source: Any, key: Any, reason: Any = "", payload: Any = None) -> EntrySpec:
    errors: dict[str, str] = {}
    if not isinstance(source, str) or not SOURCE_RE.match(source):
        errors["source"] = (
            f"must be 1-100 characters of letters, digits and _ . : -, got {source!r}"
        )
    if not isinstance(key, str) or not key.strip():
        errors["key"] = "is required and must be a non-empty string"
    elif len(key.strip()) > KEY_MAX:
        errors["key"] = f"must be at most {KEY_MAX} characters"
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        errors["reason"] = "must be a string"
    elif len(reason) > REASON_MAX:
        errors["reason"] = f"must be at most {REASON_MAX} characters"
    if payload is not None and not isinstance(payload, dict):
        errors["payload"] = f"must be a JSON object, got {type(payload).__name__}"
    if errors:
        raise BadRequest("invalid backlog entry", errors)
    return EntrySpec(source, key.strip(), reason, payload)


# --- adding -------------------------------------------------------------------------------------


def enqueue(source: str, key: str, reason: str = "", payload: dict | None = None) -> BacklogEntry:
    """Queues one entry; a key already pending for the source is returned as it is.

    ``entry.was_created`` tells which happened. Raises BadRequest on bad input.
    """
    spec = validate_entry(source, key, reason, payload)
    pending = BacklogEntry.objects.filter(
        source=spec.source, key=spec.key, status=BacklogStatus.PENDING
    )
    existing = pending.first()
    if existing is None:
        now = timezone.now()
        try:
            # The savepoint keeps a caller's transaction usable when another process
            # queued the same key between our read and this insert.
            with transaction.atomic():
                entry = BacklogEntry.objects.create(
                    source=spec.source,
                    key=spec.key,
                    reason=spec.reason,
                    payload=spec.payload or {},
                    created_at=now,
                    updated_at=now,
                    next_attempt_at=now,
                )
            entry.was_created = True
            return entry
        except IntegrityError:
            existing = pending.first()
            if existing is None:
                raise
    existing.was_created = False
    return existing


@dataclass
class BulkResult:
    added: int = 0
    already_pending: int = 0


def enqueue_many(specs: Iterable[EntrySpec], chunk_size: int = BULK_CHUNK) -> BulkResult:
    """Queues many validated entries in chunks; keys already pending are skipped.

    The partial unique index decides what is a duplicate, so concurrent adds of the same
    keys are counted right too.
    """
    result = BulkResult()
    chunk: dict[tuple[str, str], EntrySpec] = {}

    def flush() -> None:
        if not chunk:
            return
        inserted = _insert_ignoring_conflicts(list(chunk.values()), timezone.now())
        result.added += inserted
        result.already_pending += len(chunk) - inserted
        chunk.clear()

    for spec in specs:
        ident = (spec.source, spec.key)
        if ident in chunk:
            result.already_pending += 1
            continue
        chunk[ident] = spec
        if len(chunk) >= chunk_size:
            flush()
    flush()
    return result


def _insert_ignoring_conflicts(specs: list[EntrySpec], now: datetime) -> int:
    """Runs the chunk's INSERT ... ON CONFLICT DO NOTHING; returns how many rows were inserted."""
    inserted = 0
    with connection.cursor() as cursor:
        for sql, params in _insert_statements(specs, now):
            cursor.execute(sql, params)
            inserted += cursor.rowcount
    return inserted


_INSERT_COLUMNS = (
    "source",
    "key",
    "reason",
    "payload",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "claim_token",
)


def _insert_statements(
    specs: list[EntrySpec], now: datetime, *, returning: bool = False
) -> list[tuple[str, list[Any]]]:
    """Multi-row INSERT ... ON CONFLICT DO NOTHING statements with their parameters, built
    before any transaction so that a caller holding the write lock only executes them.

    Like ``bulk_create(ignore_conflicts=True)``, but the timestamps are adapted once per
    chunk instead of once per row and field: the ORM's per-value preparation was most of
    the time of a 100,000-key add. With ``returning`` each statement yields ``(id, source,
    key)`` of the rows it inserted (not of those skipped as already pending).
    """
    ops = connection.ops
    table = ops.quote_name(BacklogEntry._meta.db_table)
    columns = ", ".join(ops.quote_name(name) for name in _INSERT_COLUMNS)
    suffix = " ON CONFLICT DO NOTHING"
    if returning:
        suffix += " RETURNING " + ", ".join(ops.quote_name(n) for n in ("id", "source", "key"))
    pending = BacklogStatus.PENDING.value
    if connection.vendor == "postgresql":
        # Four arrays instead of 44,000 placeholders: the driver's cost is per placeholder.
        sql = (
            f"INSERT INTO {table} ({columns}) "
            "SELECT s, k, r, p::jsonb, %s, 0, '', %s, %s, %s, '' "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS u(s, k, r, p)" + suffix
        )
        params = [
            pending,
            now,
            now,
            now,
            [spec.source for spec in specs],
            [spec.key for spec in specs],
            [spec.reason for spec in specs],
            [json.dumps(spec.payload or {}) for spec in specs],
        ]
        return [(sql, params)]
    stamp = ops.adapt_datetimefield_value(now)
    row_sql = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"
    statements: list[tuple[str, list[Any]]] = []
    # SQLite allows 32,766 parameters per statement: 11 columns x 1,000 rows stays inside.
    for start in range(0, len(specs), 1000):
        part = specs[start : start + 1000]
        params: list[Any] = []
        for spec in part:
            params.extend(
                (
                    spec.source,
                    spec.key,
                    spec.reason,
                    json.dumps(spec.payload or {}),
                    pending,
                    0,
                    "",
                    stamp,
                    stamp,
                    stamp,
                    "",
                )
            )
        sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(part))}"
        statements.append((sql + suffix, params))
    return statements


def enqueue_all(specs: list[EntrySpec]) -> list[BacklogEntry]:
    """Queues validated entries all or nothing (the API): one entry per spec, in order, with
    ``was_created``; a key already pending (or repeated in ``specs``) gives the pending entry,
    loaded with its id, source, key and status only.

    One ``enqueue`` per entry (a read, a savepoint and an insert each) held SQLite's write
    lock for 13 s over 10,000 entries, and every ping and check run waited behind it. Here the
    statements are built first, the transaction only runs the inserts and one indexed read of
    the keys that were already pending, and model instances are built after the commit
    (``bench/backlog_post.py``).
    """
    now = timezone.now()
    first: dict[tuple[str, str], EntrySpec] = {}
    for spec in specs:
        first.setdefault((spec.source, spec.key), spec)
    statements = _insert_statements(list(first.values()), now, returning=True)
    inserted: dict[tuple[str, str], int] = {}
    with transaction.atomic():
        claim_idempotency_key()  # committed with these rows, or not at all
        with connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                inserted.update(((source, key), pk) for pk, source, key in cursor.fetchall())
        existing, created_late = _current_rows(
            [spec for ident, spec in first.items() if ident not in inserted]
        )
    result: list[BacklogEntry] = []
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        ident = (spec.source, spec.key)
        if ident in inserted:
            entry = BacklogEntry(
                pk=inserted[ident],
                source=spec.source,
                key=spec.key,
                reason=spec.reason,
                payload=spec.payload or {},
                status=BacklogStatus.PENDING,
                created_at=now,
                updated_at=now,
                next_attempt_at=now,
            )
            entry.was_created = ident not in seen
        else:
            pk, status = existing[ident]
            entry = BacklogEntry.from_db(
                None, ["id", "source", "key", "status"], (pk, spec.source, spec.key, status)
            )
            entry.was_created = ident in created_late and ident not in seen
        seen.add(ident)
        result.append(entry)
    return result


def _current_rows(
    specs: list[EntrySpec],
) -> tuple[dict[tuple[str, str], tuple[int, str]], set[tuple[str, str]]]:
    """(id, status) of the pending entry of each spec's key (backlog_one_pending_per_key), and
    the keys queued here after all. On PostgreSQL a worker may have claimed the pending entry
    since the insert saw it: then the newest entry of the key, or, if the key was cleared
    meanwhile, a new one."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    created: set[tuple[str, str]] = set()
    by_source: dict[str, list[str]] = {}
    for spec in specs:
        by_source.setdefault(spec.source, []).append(spec.key)
    for source, keys in by_source.items():
        for start in range(0, len(keys), 1000):
            rows = BacklogEntry.objects.filter(
                source=source, key__in=keys[start : start + 1000], status=BacklogStatus.PENDING
            ).values_list("id", "key", "status")
            found.update(((source, key), (pk, status)) for pk, key, status in rows)
    for spec in specs:
        ident = (spec.source, spec.key)
        if ident in found:
            continue
        latest = (
            BacklogEntry.objects.filter(source=spec.source, key=spec.key)
            .order_by("-id")
            .values_list("id", "status")
            .first()
        )
        if latest is None:
            entry = enqueue(spec.source, spec.key, spec.reason, spec.payload)
            latest = (entry.pk, entry.status)
            created.add(ident)
        found[ident] = latest
    return found, created


def parse_entry_lines(
    lines: Iterable[str], *, source: str = DEFAULT_SOURCE, reason: str = ""
) -> list[EntrySpec]:
    """Entries from a file: one key per line, or one JSON object per line
    (``{"key": …, "source": …, "reason": …, "payload": {…}}``). Blank lines and ``#``
    comments are skipped. Raises BadRequest naming the first bad line; nothing is queued."""
    specs: list[EntrySpec] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("{"):
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BadRequest(
                        "invalid backlog entry", {"json": f"not valid JSON ({exc.msg})"}
                    ) from None
                specs.append(
                    validate_entry(
                        data.get("source", source),
                        data.get("key"),
                        data.get("reason", reason),
                        data.get("payload"),
                    )
                )
            else:
                specs.append(validate_entry(source, line, reason))
        except BadRequest as exc:
            raise BadRequest(
                "invalid backlog entries", {f"line {number}": exc.describe_fields()}
            ) from None
    return specs


# --- inspecting ---------------------------------------------------------------------------------


def stats(now: datetime | None = None) -> dict[str, Any]:
    """Counts by status and source, oldest pending age, processed in the last hour.

    Three index-backed queries, so it stays fast on millions of rows.
    """
    now = now or timezone.now()
    totals = {status.value: 0 for status in BacklogStatus}
    by_source: dict[str, dict[str, int]] = {}
    rows = BacklogEntry.objects.order_by().values_list("status", "source").annotate(n=Count("*"))
    for status, source, count in rows:
        totals[status] = totals.get(status, 0) + count
        by_source.setdefault(source, {s.value: 0 for s in BacklogStatus})[status] = count
    oldest = BacklogEntry.objects.filter(status=BacklogStatus.PENDING).aggregate(
        oldest=Min("created_at")
    )["oldest"]
    processed_last_hour = BacklogEntry.objects.filter(
        processed_at__gt=now - timedelta(hours=1)
    ).count()
    return {
        **totals,
        "by_source": dict(sorted(by_source.items())),
        "oldest_pending_at": oldest.isoformat() if oldest else None,
        "oldest_pending_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
        "processed_last_hour": processed_last_hour,
    }


def entries(
    *, status: str | None = BacklogStatus.PENDING, source: str | None = None, limit: int = 50
) -> list[BacklogEntry]:
    queryset = BacklogEntry.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    if source:
        queryset = queryset.filter(source=source)
    return list(queryset.order_by("created_at", "id")[:limit])


def activity(since: datetime, until: datetime) -> dict[str, int]:
    """The delta view's backlog section."""
    return {
        "added": BacklogEntry.objects.filter(created_at__gt=since, created_at__lte=until).count(),
        "processed": BacklogEntry.objects.filter(
            processed_at__gt=since, processed_at__lte=until
        ).count(),
        "failed": BacklogEntry.objects.filter(
            status=BacklogStatus.FAILED, updated_at__gt=since, updated_at__lte=until
        ).count(),
    }


def collect_metrics(now: datetime) -> list[Any]:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(
        "opsconsole_backlog_entries",
        "Backlog entries by source and status",
        labels=["source", "status"],
    )
    counts: dict[str, dict[str, int]] = {}
    rows = BacklogEntry.objects.order_by().values_list("source", "status").annotate(n=Count("*"))
    for source, status, count in rows:
        counts.setdefault(source, {s.value: 0 for s in BacklogStatus})[status] = count
    for source, by_status in sorted(counts.items()):
        for status, count in by_status.items():
            family.add_metric([source, status], count)
    return [family]


# --- state changes ------------------------------------------------------------------------------


def _pending_twin() -> Exists:
    """Another entry of the same (source, key) is pending: requeueing this one would break
    the one-pending-per-key rule, and the pending one will do the sync anyway."""
    return Exists(
        BacklogEntry.objects.filter(
            source=OuterRef("source"), key=OuterRef("key"), status=BacklogStatus.PENDING
        ).exclude(pk=OuterRef("pk"))
    )


def requeue(queryset: QuerySet[BacklogEntry]) -> tuple[int, int]:
    """Failed or processed entries back to pending with fresh attempts.

    Returns (requeued, skipped); entries being processed and keys already pending are skipped.
    """
    now = timezone.now()
    candidates = queryset.filter(status__in=[BacklogStatus.FAILED, BacklogStatus.PROCESSED])
    total = candidates.count()
    requeued = 0
    # One at a time per key: two rows of one key in the selection cannot both become pending.
    ids = list(candidates.filter(~_pending_twin()).values_list("id", flat=True))
    seen: set[tuple[str, str]] = set()
    for entry_id, source, key in (
        BacklogEntry.objects.filter(id__in=ids).order_by("-id").values_list("id", "source", "key")
    ):
        if (source, key) in seen:
            continue
        seen.add((source, key))
        try:
            with transaction.atomic():
                requeued += BacklogEntry.objects.filter(
                    id=entry_id, status__in=[BacklogStatus.FAILED, BacklogStatus.PROCESSED]
                ).update(
                    status=BacklogStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    updated_at=now,
                    processed_at=None,
                    last_error="",
                )
        except IntegrityError:
            continue
    return requeued, total - requeued


def retry_failed(source: str | None = None) -> tuple[int, int]:
    queryset = BacklogEntry.objects.filter(status=BacklogStatus.FAILED)
    if source:
        queryset = queryset.filter(source=source)
    return requeue(queryset)


def mark_processed(queryset: QuerySet[BacklogEntry]) -> int:
    """Pending or failed entries to processed, without calling a handler (an operator says the
    sync happened some other way). Entries a worker holds are left to it."""
    now = timezone.now()
    return queryset.filter(status__in=[BacklogStatus.PENDING, BacklogStatus.FAILED]).update(
        status=BacklogStatus.PROCESSED, processed_at=now, updated_at=now
    )


def mark_key_processed(key: str, source: str = DEFAULT_SOURCE) -> int:
    return mark_processed(BacklogEntry.objects.filter(key=key, source=source))


def sources_with_open_key(key: str) -> list[str]:
    """The sources holding ``key`` pending or failed: those ``mark_key_processed`` could mark."""
    return sorted(
        set(
            BacklogEntry.objects.filter(
                key=key, status__in=[BacklogStatus.PENDING, BacklogStatus.FAILED]
            ).values_list("source", flat=True)
        )
    )


def clear(*, source: str | None = None, status: str | None = None) -> int:
    queryset = BacklogEntry.objects.all()
    if source:
        queryset = queryset.filter(source=source)
    if status:
        queryset = queryset.filter(status=status)
    deleted, _ = queryset.delete()
    return deleted


# --- processing ---------------------------------------------------------------------------------


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the n-th failed attempt: base, 2x base, 4x base, … capped."""
    return timedelta(
        seconds=backoff_seconds(
            attempts, settings.BACKLOG_RETRY_DELAY, settings.BACKLOG_RETRY_MAX_DELAY
        )
    )


def claim(
    count: int, *, now: datetime, source: str | None = None, token: str | None = None
) -> list[BacklogEntry]:
    """Takes up to ``count`` due pending entries for this worker.

    PostgreSQL: rows locked by another worker are skipped, not waited on. SQLite: the
    IMMEDIATE transaction serialises claims. Either way the conditional update on
    ``status=pending`` is the claim, and the rows are read back by this claim's token.
    """
    token = token or uuid.uuid4().hex
    with transaction.atomic():
        queryset = BacklogEntry.objects.filter(
            status=BacklogStatus.PENDING, next_attempt_at__lte=now
        )
        if source:
            queryset = queryset.filter(source=source)
        queryset = queryset.order_by("next_attempt_at", "id")
        if connection.vendor == "postgresql":
            queryset = queryset.select_for_update(skip_locked=True)
        ids = list(queryset.values_list("id", flat=True)[:count])
        if not ids:
            return []
        BacklogEntry.objects.filter(id__in=ids, status=BacklogStatus.PENDING).update(
            status=BacklogStatus.PROCESSING, claim_token=token, claimed_at=now, updated_at=now
        )
    return list(
        BacklogEntry.objects.filter(claim_token=token, status=BacklogStatus.PROCESSING).order_by(
            "next_attempt_at", "id"
        )
    )


def release_stale_claims(now: datetime) -> int:
    """Entries held longer than the claim timeout (their worker died) go back to pending."""
    timeout = float(settings.BACKLOG_CLAIM_TIMEOUT)
    cutoff = now - timedelta(seconds=timeout)
    stale = BacklogEntry.objects.filter(status=BacklogStatus.PROCESSING, claimed_at__lt=cutoff)
    released = 0
    for entry in stale[:1000]:
        released += _release(
            entry, now, "claim expired: the worker holding it stopped", claimed_before=cutoff
        )
    return released


def _release(
    entry: BacklogEntry, now: datetime, note: str, *, claimed_before: datetime | None = None
) -> int:
    """A held entry back to pending, as if it had not been claimed. With ``claimed_before``
    only if its claim was not refreshed since it was found stale: its worker is alive."""
    held = BacklogEntry.objects.filter(
        pk=entry.pk, status=BacklogStatus.PROCESSING, claim_token=entry.claim_token
    )
    if claimed_before is not None:
        held = held.filter(claimed_at__lt=claimed_before)
    try:
        with transaction.atomic():
            return held.update(
                status=BacklogStatus.PENDING,
                claim_token="",
                claimed_at=None,
                updated_at=now,
                next_attempt_at=now,
            )
    except IntegrityError:
        # A newer pending entry of the key exists and will do the sync.
        return held.update(
            status=BacklogStatus.FAILED,
            claim_token="",
            updated_at=now,
            last_error=f"{note}; superseded by a newer pending entry",
        )


@dataclass
class ProcessReport:
    processed: int = 0
    retrying: int = 0
    failed: int = 0
    released: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (source, key, error)
    seconds: float = 0.0

    @property
    def handled(self) -> int:
        return self.processed + self.retrying + self.failed


def _record_failure(
    entry: BacklogEntry, error: str, *, permanent: bool, max_attempts: int, report: ProcessReport
) -> None:
    now = timezone.now()
    attempts = entry.attempts + 1
    held = BacklogEntry.objects.filter(
        pk=entry.pk, status=BacklogStatus.PROCESSING, claim_token=entry.claim_token
    )
    # Handlers echo URLs and payload values back in their errors: scrubbed of the entry's and
    # its handler's secrets before the error is stored, listed or logged.
    secrets = secret_values({"payload": entry.payload, "handler": handler_setting(entry.source)})
    error = error_excerpt(redact(error, secrets))
    report.errors.append((entry.source, entry.key, error))
    if not permanent and attempts < max_attempts:
        try:
            with transaction.atomic():
                # Guarded by the claim token: an entry whose claim was taken over is not touched.
                report.retrying += held.update(
                    status=BacklogStatus.PENDING,
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=now + retry_delay(attempts),
                    claim_token="",
                    updated_at=now,
                )
            return
        except IntegrityError:
            error = f"{error} (not retried: a newer pending entry for this key will sync it)"
    report.failed += held.update(
        status=BacklogStatus.FAILED,
        attempts=attempts,
        last_error=error,
        claim_token="",
        updated_at=now,
    )


def _record_success(entry: BacklogEntry, report: ProcessReport) -> None:
    """Recorded as soon as the handler returns, guarded by the claim token: a worker killed
    later never leaves this entry to be handled again."""
    now = timezone.now()
    recorded = BacklogEntry.objects.filter(
        pk=entry.pk, status=BacklogStatus.PROCESSING, claim_token=entry.claim_token
    ).update(
        status=BacklogStatus.PROCESSED,
        processed_at=now,
        updated_at=now,
        attempts=F("attempts") + 1,
        last_error="",
        claim_token="",
    )
    report.processed += recorded
    if not recorded:
        logger.warning(
            "backlog entry %s:%s was handled, but its claim had been released meanwhile",
            entry.source,
            entry.key,
        )


def _release_held(token: str, now: datetime, note: str) -> int:
    """Hands back every entry still held under ``token``, untouched: due as before, no attempt
    counted."""
    held = BacklogEntry.objects.filter(claim_token=token, status=BacklogStatus.PROCESSING)
    try:
        with transaction.atomic():
            return held.update(
                status=BacklogStatus.PENDING, claim_token="", claimed_at=None, updated_at=now
            )
    except IntegrityError:
        # One of them has a newer pending entry: one by one, so the others still go back.
        return sum(_release(entry, now, note) for entry in held)


class ClaimKeeper:
    """Keeps a claim alive while its entries are handled: every ``interval`` seconds a thread
    of its own moves ``claimed_at`` of the entries still held under the token to now, so no
    other worker takes them for a dead worker's, however long one handler call blocks."""

    def __init__(self, token: str, interval: float):
        self.token, self.interval = token, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backlog-claim", daemon=True)
        self.refreshes = 0

    def __enter__(self) -> ClaimKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    BacklogEntry.objects.filter(
                        claim_token=self.token, status=BacklogStatus.PROCESSING
                    ).update(claimed_at=timezone.now())
                    self.refreshes += 1
                except DatabaseError as exc:  # the next refresh tries again
                    logger.warning("backlog claim refresh failed: %s", exc)
        finally:
            connections.close_all()  # this thread's own connections


def _handle(
    entry: BacklogEntry,
    handlers: HandlerSet,
    timeout: float,
    max_attempts: int,
    report: ProcessReport,
) -> None:
    try:
        handlers.call(entry, delivery_for(entry, timeout))
    except HandlerMissing as exc:
        _record_failure(entry, str(exc), permanent=True, max_attempts=max_attempts, report=report)
    except Exception as exc:  # a handler's failure is the entry's, not the run's
        _record_failure(
            entry,
            f"{type(exc).__name__}: {exc}",
            permanent=False,
            max_attempts=max_attempts,
            report=report,
        )
    else:
        _record_success(entry, report)


def process(
    *,
    limit: int | None = None,
    source: str | None = None,
    max_seconds: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    chunk_size: int = CLAIM_CHUNK,
) -> ProcessReport:
    """Claims and handles due entries until none are left, ``limit`` is reached, time is up
    or ``stop()`` says so. Safe to run in any number of processes at once.

    The deadline is checked before each entry; each claim takes no more entries than the
    remaining time can handle (at first counting ``BACKLOG_WEBHOOK_TIMEOUT`` per entry, then
    this run's measured average); each outcome is recorded when it happens; the claim is
    refreshed while held; what is left when the run stops goes back to pending at once.
    """
    report = ProcessReport()
    started = time.monotonic()
    deadline = None if max_seconds is None else started + max_seconds
    max_attempts = int(settings.BACKLOG_MAX_ATTEMPTS)
    handler_timeout = float(settings.BACKLOG_WEBHOOK_TIMEOUT)
    refresh = backlog_claim_refresh()
    handlers = HandlerSet(timeout=handler_timeout)
    per_entry = handler_timeout  # until this run has measured its handlers
    handling_seconds = 0.0
    stopped = False
    with job_context(job_name="backlog-process"):
        try:
            report.released = release_stale_claims(timezone.now())
            while not stopped and not stop():
                want = chunk_size if limit is None else min(chunk_size, limit - report.handled)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    want = min(want, max(1, int(remaining / per_entry)))
                if want <= 0:
                    break
                token = uuid.uuid4().hex
                batch = claim(want, now=timezone.now(), source=source, token=token)
                if not batch:
                    break
                try:
                    with ClaimKeeper(token, refresh):
                        for entry in batch:
                            if stop() or (deadline is not None and time.monotonic() >= deadline):
                                stopped = True
                                break
                            began = time.monotonic()
                            _handle(entry, handlers, handler_timeout, max_attempts, report)
                            handling_seconds += time.monotonic() - began
                finally:
                    # Whatever this worker will not handle (the deadline, a stop, an error
                    # leaving the loop) goes back now, not after the claim timeout.
                    _release_held(token, timezone.now(), "released unhandled")
                if report.handled:
                    per_entry = max(handling_seconds / report.handled, 0.001)
        finally:
            handlers.close()
    report.seconds = time.monotonic() - started
    if report.handled or report.released:
        logger.info(
            "backlog processed %d, retrying %d, failed %d",
            report.processed,
            report.retrying,
            report.failed,
            extra={"progress": report.handled},
        )
    return report


def _dry_run_outcome(source: str) -> str:
    """The one thing processing would do to an entry of ``source``: resolved as processing
    resolves it (an unimportable handler fails like a missing one), without calling it."""
    handlers = HandlerSet()
    try:
        handlers.get(source)
    except HandlerMissing as exc:
        if handler_setting(source) is None:
            # The full hint (an example setting) is long: one line per entry stays readable.
            return f"would fail, not retried: no handler for source {source!r} in BACKLOG_HANDLERS"
        return f"would fail, not retried: {exc}"
    finally:
        handlers.close()
    return f"would {describe_handler(source)}"


def dry_run(
    *, limit: int | None = None, source: str | None = None, show: int = 20
) -> dict[str, Any]:
    """What ``process`` would do now, reading only."""
    now = timezone.now()
    due = BacklogEntry.objects.filter(status=BacklogStatus.PENDING, next_attempt_at__lte=now)
    if source:
        due = due.filter(source=source)
    by_source = dict(
        due.order_by().values_list("source").annotate(n=Count("*")).values_list("source", "n")
    )
    total = sum(by_source.values())
    if limit is not None:
        total = min(total, limit)
    first = list(due.order_by("next_attempt_at", "id")[: min(show, total)])
    waiting = BacklogEntry.objects.filter(status=BacklogStatus.PENDING, next_attempt_at__gt=now)
    if source:
        waiting = waiting.filter(source=source)
    return {
        "would_process": total,
        "by_source": {
            name: {
                "due": count,
                "handler": describe_handler(name),
                "outcome": _dry_run_outcome(name),
            }
            for name, count in sorted(by_source.items())
        },
        "first": [(entry.source, entry.key, entry.attempts) for entry in first],
        "waiting_for_retry": waiting.count(),
    }


def process_scheduled() -> str:
    """The django-q2 task behind the 5-minute schedule. Its budget is derived from the task
    timeout (opsconsole.timeouts.backlog_run_budget): the last handler call and its write end
    before django-q2 stops the task."""
    report = process(max_seconds=backlog_run_budget())
    return f"processed {report.processed}, retrying {report.retrying}, failed {report.failed}"


def pending_count_and_oldest(
    source: str | None = None, now: datetime | None = None
) -> tuple[int, float | None]:
    now = now or timezone.now()
    queryset = BacklogEntry.objects.filter(status=BacklogStatus.PENDING)
    if source:
        queryset = queryset.filter(source=source)
    result = queryset.aggregate(n=Count("*"), oldest=Min("created_at"))
    oldest = result["oldest"]
    return result["n"], (now - oldest).total_seconds() if oldest else None
