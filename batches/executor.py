"""The batch executor: a django-q2 task that works through a batch chunk by chunk.

Correctness never rests on the broker: the Redis broker delivers at most once and a killed
worker loses its task, so every claim lives in the database. A chunk is claimed with a lease and
a claim token; its outcomes are recorded in one transaction that first locks the batch row and
only touches items still carrying the token, then updates the counters and, when no item is
left open, the final status. Lock order is always batch row, then items, so cancel, timeout,
retry and recording never deadlock one another.

``recover`` (every minute, and ``manage.py batches recover``) puts items whose lease expired
back to pending and re-queues active batches no worker has touched for longer than a lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from batches.events import count_finished, count_item_failures
from batches.models import (
    ACTIVE_STATUSES,
    OPEN_ITEM_STATUSES,
    BatchItem,
    BatchOperation,
    BatchStatus,
    ItemStatus,
)
from batches.operations import Operation, PermanentError, RetryableError, get_operation
from opsconsole.excerpt import error_excerpt
from opsconsole.logging import job_context, update_job_context
from opsconsole.redaction import redact, secret_values
from opsconsole.retry import backoff_seconds
from opsconsole.timeouts import lease_margin

logger = logging.getLogger(__name__)

TASK = "batches.executor.run_batch"
# What a chunk may overrun its items' own timeouts before its lease lapses is
# opsconsole.timeouts.lease_margin(): the database's longest lock wait (SQLite's busy timeout:
# recording the chunk may wait that long for the write lock) plus slack. It is also the
# shortest heartbeat age at which recovery looks at a batch.
MAX_THREADS = 32
# A worker killed while holding an item does not count against the item's attempts, but an
# item that takes its worker down every time must not loop for ever.
LOST_WORKER_ALLOWANCE = 2
MAX_BACKOFF = 60.0


def _backoff(attempts: int) -> float:
    return backoff_seconds(attempts, settings.BATCH_RETRY_BACKOFF, MAX_BACKOFF)


def lease_seconds(operation: Operation, payload: dict[str, Any], chunk_size: int) -> float:
    """How long a chunk may take: its items run ``MAX_THREADS`` at a time (or one at a time)."""
    parallel = min(chunk_size, MAX_THREADS) if operation.concurrent else 1
    rounds = math.ceil(chunk_size / parallel)
    return rounds * operation.item_timeout(payload) + lease_margin()


def final_status(succeeded: int, failed: int) -> str:
    if not failed:
        return BatchStatus.COMPLETED
    if not succeeded:
        return BatchStatus.FAILED
    return BatchStatus.COMPLETED_WITH_ERRORS


def tasks_for(item_count: int) -> int:
    """How many executor tasks a batch gets: a big batch (ten chunks or more per task) is spread
    over the cluster's workers, a small one keeps to one so the delay between chunks still
    paces what the downstream service sees."""
    chunks = math.ceil(item_count / settings.BATCH_CHUNK_SIZE)
    return max(1, min(int(settings.Q_WORKERS), chunks // 10))


def enqueue_batch(batch_id: uuid.UUID | str, tasks: int = 1) -> bool:
    """Queues the executor task (``tasks`` copies: claims in the database let them share the
    batch). A broker that is down is not an error here: the batch stays pending in the
    database and recovery queues it once the broker is back."""
    from django_q.tasks import async_task

    try:
        for _ in range(tasks):
            async_task(
                TASK,
                str(batch_id),
                task_name=f"batch-{batch_id}",
                group="batches",
                # The whole-batch timeout bounds the task; the margin lets it record the time-out.
                timeout=int(settings.BATCH_OPERATION_TIMEOUT + 2 * lease_margin() + 60),
            )
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the batch to recovery
        logger.warning(
            "could not queue batch %s (%s: %s); recovery will queue it",
            batch_id,
            type(exc).__name__,
            exc,
            extra={"batch_id": str(batch_id)},
        )
        return False
    return True


def enqueue_work(batch_id: uuid.UUID, items: int) -> None:
    """The models' "work queued" hook (registered in BatchesConfig.ready)."""
    enqueue_batch(batch_id, tasks_for(items))


# --- claiming and recording --------------------------------------------------------------------


def claim_chunk(batch_id: uuid.UUID, size: int, lease: float, now: datetime) -> list[BatchItem]:
    """Takes up to ``size`` due pending items. SKIP LOCKED on PostgreSQL lets several workers
    claim from one batch at once; SQLite serialises writers anyway (IMMEDIATE transactions)."""
    token = uuid.uuid4()
    with transaction.atomic():
        ids = list(
            BatchItem.objects.select_for_update(skip_locked=True)
            .filter(batch_id=batch_id, status=ItemStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:size]
        )
        if not ids:
            return []
        BatchItem.objects.filter(pk__in=ids, status=ItemStatus.PENDING).update(
            status=ItemStatus.RUNNING,
            claim_token=token,
            lease_until=now + timedelta(seconds=lease),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    BatchOperation.objects.filter(pk=batch_id).update(heartbeat_at=now)
    return list(BatchItem.objects.filter(claim_token=token).order_by("id"))


Outcome = tuple[BatchItem, str, Any]  # (item, "ok" | "retry" | "fail", result or message)


def _item_error(message: Any, secrets: list[str]) -> str:
    """What an item keeps of a failure: scrubbed of the payload's secrets first (a cut must not
    leave half a secret), then a short readable excerpt, never a target's whole error page."""
    return error_excerpt(redact(str(message), secrets))


def _finish_if_done(batch: BatchOperation, now: datetime) -> None:
    """Inside the recording transaction, with the batch row locked."""
    if batch.status not in ACTIVE_STATUSES:
        return
    if BatchItem.objects.filter(batch_id=batch.pk, status__in=OPEN_ITEM_STATUSES).exists():
        return
    batch.status = final_status(batch.succeeded_items, batch.failed_items)
    batch.finished_at = now
    batch.save(update_fields=["status", "finished_at"])
    count_finished(batch.operation, batch.status, batch.started_at, now)
    logger.info(
        "batch %s finished: %s (%d succeeded, %d failed of %d)",
        batch.pk,
        batch.status,
        batch.succeeded_items,
        batch.failed_items,
        batch.total_items,
        extra={"batch_id": str(batch.pk), "phase": "finished"},
    )


def record_outcomes(batch_id: uuid.UUID, outcomes: list[Outcome], now: datetime) -> tuple[int, int]:
    """Writes a chunk's results; counts and final status move in the same transaction.
    Returns (succeeded, failed) as recorded (an item whose claim was taken over is skipped)."""
    max_attempts = settings.BATCH_ITEM_MAX_ATTEMPTS
    with transaction.atomic():
        batch = BatchOperation.objects.select_for_update().get(pk=batch_id)
        # Servers echo URLs and headers back in their errors: the payload's secrets are
        # scrubbed from every item error before it is stored and shown.
        secrets = secret_values(batch.payload)
        tokens = {item.pk: item.claim_token for item, _, _ in outcomes}
        held = {
            item.pk: item
            for item in BatchItem.objects.select_for_update().filter(
                pk__in=list(tokens), status=ItemStatus.RUNNING
            )
            if item.claim_token == tokens[item.pk]
        }
        succeeded = failed = 0
        changed: list[BatchItem] = []
        for claimed, kind, value in outcomes:
            item = held.get(claimed.pk)
            if item is None:
                continue
            item.updated_at = now
            item.lease_until = None
            item.claim_token = None
            if kind == "ok":
                # A success with a warning (the cache it invalidates was down) keeps the
                # warning as its error text: succeeded, but not silently.
                warning = value.get("warning") if isinstance(value, dict) else None
                item.status, item.result, item.error, item.finished_at = (
                    ItemStatus.SUCCEEDED,
                    value,
                    _item_error(warning, secrets) if warning else "",
                    now,
                )
                succeeded += 1
            elif kind == "retry" and item.attempts < max_attempts:
                item.status, item.error = ItemStatus.PENDING, _item_error(value, secrets)
                item.next_attempt_at = now + timedelta(seconds=_backoff(item.attempts))
            else:
                suffix = f" (after {item.attempts} attempts)" if kind == "retry" else ""
                item.status, item.error, item.finished_at = (
                    ItemStatus.FAILED,
                    _item_error(value, secrets) + suffix,
                    now,
                )
                failed += 1
            changed.append(item)
        # One UPDATE per distinct outcome: a chunk of identical answers is a single statement,
        # where a per-row CASE (bulk_update) made recording cost more than the requests.
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for item in changed:
            signature = (
                item.status,
                json.dumps(item.result, sort_keys=True),
                item.error,
                item.finished_at,
                item.next_attempt_at,
            )
            groups[signature].append(item.pk)
        for (status, result, error, finished_at, next_attempt_at), ids in groups.items():
            BatchItem.objects.filter(pk__in=ids).update(
                status=status,
                result=json.loads(result),
                error=error,
                finished_at=finished_at,
                next_attempt_at=next_attempt_at,
                lease_until=None,
                claim_token=None,
                updated_at=now,
            )
        batch.succeeded_items += succeeded
        batch.failed_items += failed
        count_item_failures(batch.operation, failed)
        batch.heartbeat_at = now
        batch.save(update_fields=["succeeded_items", "failed_items", "heartbeat_at"])
        _finish_if_done(batch, now)
    return succeeded, failed


def fail_open_items(batch_id: uuid.UUID, error: str, now: datetime, batch_error: str = "") -> int:
    """Fails every open item (the time-out, an operation that no longer exists)."""
    with transaction.atomic():
        batch = BatchOperation.objects.select_for_update().get(pk=batch_id)
        if batch.status not in ACTIVE_STATUSES:
            return 0
        count = BatchItem.objects.filter(batch_id=batch_id, status__in=OPEN_ITEM_STATUSES).update(
            status=ItemStatus.FAILED,
            error=error,
            finished_at=now,
            updated_at=now,
            claim_token=None,
            lease_until=None,
        )
        batch.failed_items += count
        count_item_failures(batch.operation, count)
        batch.error = batch_error or error
        batch.save(update_fields=["failed_items", "error"])
        _finish_if_done(batch, now)
    return count


# --- the task ----------------------------------------------------------------------------------


def _process_one(
    operation: Operation, batch: BatchOperation, item: BatchItem, session: Any
) -> Outcome:
    try:
        result = operation.process(batch, item, session)
        json.dumps(result)
        return item, "ok", result
    except RetryableError as exc:
        return item, "retry", str(exc) or type(exc).__name__
    except PermanentError as exc:
        return item, "fail", str(exc) or type(exc).__name__
    except (TypeError, ValueError) as exc:
        return item, "fail", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - an unexpected error may pass: retried, bounded
        logger.exception(
            "item %s of batch %s raised", item.key, batch.pk, extra={"batch_id": str(batch.pk)}
        )
        return item, "retry", f"{type(exc).__name__}: {exc}"


def run_batch(batch_id: str) -> str:
    """The django-q2 task. Safe to run twice at once for one batch; returns the batch status."""
    batch = BatchOperation.objects.filter(pk=batch_id).first()
    if batch is None:
        return "unknown batch"
    with job_context(job_name="run_batch", batch_id=str(batch.pk), phase="running"):
        return _run(batch)


def _run(batch: BatchOperation) -> str:
    operation = get_operation(batch.operation)
    now = timezone.now()
    BatchOperation.objects.filter(pk=batch.pk, status=BatchStatus.PENDING).update(
        status=BatchStatus.RUNNING, started_at=Coalesce(F("started_at"), now), heartbeat_at=now
    )
    batch.refresh_from_db()
    if batch.is_final:
        return batch.status
    if operation is None:
        fail_open_items(batch.pk, f"unknown operation {batch.operation!r}", now)
        return BatchOperation.objects.get(pk=batch.pk).status

    chunk_size = settings.BATCH_CHUNK_SIZE
    delay = float(settings.BATCH_EXECUTOR_DELAY)
    timeout = float(settings.BATCH_OPERATION_TIMEOUT)
    lease = lease_seconds(operation, batch.payload, chunk_size)
    deadline = batch.started_at + timedelta(seconds=timeout)
    threads = min(chunk_size, MAX_THREADS) if operation.concurrent else 0
    logger.info("batch %s started: %d items, %s", batch.pk, batch.total_items, batch.operation)

    pool_cm = (
        ThreadPoolExecutor(threads, thread_name_prefix="batch")
        if threads
        else contextlib.nullcontext()
    )
    with operation.session(batch) as session, pool_cm as pool:
        while True:
            now = timezone.now()
            status = (
                BatchOperation.objects.filter(pk=batch.pk).values_list("status", flat=True).first()
            )
            if status not in ACTIVE_STATUSES:
                # Cancelled (or finished by another worker): stop before the next chunk.
                return status or "deleted"
            if now >= deadline:
                count = fail_open_items(
                    batch.pk,
                    "timed out",
                    now,
                    batch_error=f"timed out after {timeout:g} s (BATCH_OPERATION_TIMEOUT)",
                )
                logger.warning("batch %s timed out; %d items failed", batch.pk, count)
                continue
            items = claim_chunk(batch.pk, chunk_size, lease, now)
            if not items:
                due = BatchItem.objects.filter(
                    batch_id=batch.pk, status=ItemStatus.PENDING
                ).aggregate(due=Min("next_attempt_at"))["due"]
                if due is None:
                    # Nothing left to claim; items still leased are finished by their holders
                    # (or by recovery if their worker died).
                    with transaction.atomic():
                        locked = BatchOperation.objects.select_for_update().get(pk=batch.pk)
                        _finish_if_done(locked, timezone.now())
                    return BatchOperation.objects.get(pk=batch.pk).status
                wait = min((due - now).total_seconds(), (deadline - now).total_seconds(), 5.0)
                time.sleep(max(wait, 0.01))
                BatchOperation.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now())
                continue
            if pool is not None:
                outcomes = list(
                    pool.map(lambda item: _process_one(operation, batch, item, session), items)
                )
            else:
                outcomes = [_process_one(operation, batch, item, session) for item in items]
            record_outcomes(batch.pk, outcomes, timezone.now())
            update_job_context(
                progress=f"{sum(1 for o in outcomes if o[1] != 'retry')}/{len(items)} in chunk"
            )
            if delay > 0:
                # Protects the downstream service: at most one chunk per delay per worker.
                time.sleep(delay)


# --- recovery ----------------------------------------------------------------------------------


def recover(now: datetime | None = None) -> dict[str, int]:
    """Releases items whose lease expired and re-queues active batches without a live worker.
    Idempotent and safe to run in several processes at once."""
    now = now or timezone.now()
    max_attempts = settings.BATCH_ITEM_MAX_ATTEMPTS
    with job_context(job_name="batches_recover"):
        expired = BatchItem.objects.filter(status=ItemStatus.RUNNING, lease_until__lt=now)
        released = expired.filter(attempts__lt=max_attempts + LOST_WORKER_ALLOWANCE).update(
            status=ItemStatus.PENDING,
            claim_token=None,
            lease_until=None,
            # next_attempt_at is left as it was: the item was due when claimed, so it is due now.
            updated_at=now,
        )
        lost = 0
        for batch_id in set(expired.values_list("batch_id", flat=True)):
            with transaction.atomic():
                batch = BatchOperation.objects.select_for_update().get(pk=batch_id)
                count = BatchItem.objects.filter(
                    batch_id=batch_id, status=ItemStatus.RUNNING, lease_until__lt=now
                ).update(
                    status=ItemStatus.FAILED,
                    error="its worker was lost on every attempt",
                    finished_at=now,
                    updated_at=now,
                    claim_token=None,
                    lease_until=None,
                )
                batch.failed_items += count
                count_item_failures(batch.operation, count)
                batch.save(update_fields=["failed_items"])
                _finish_if_done(batch, now)
                lost += count

        requeued = 0
        candidates = BatchOperation.objects.filter(
            status__in=ACTIVE_STATUSES, heartbeat_at__lt=now - timedelta(seconds=lease_margin())
        ).only("id", "operation", "payload", "heartbeat_at")
        chunk_size = settings.BATCH_CHUNK_SIZE
        for batch in candidates.iterator():
            operation = get_operation(batch.operation)
            stale_after = (
                lease_seconds(operation, batch.payload, chunk_size) if operation else lease_margin()
            )
            if batch.heartbeat_at >= now - timedelta(
                seconds=stale_after + float(settings.BATCH_EXECUTOR_DELAY)
            ):
                continue
            # Whoever moves the heartbeat queues the batch: two recoveries never both do.
            if BatchOperation.objects.filter(pk=batch.pk, heartbeat_at=batch.heartbeat_at).update(
                heartbeat_at=now
            ):
                enqueue_batch(batch.pk)
                requeued += 1
    if released or lost or requeued:
        logger.info(
            "batch recovery: %d items released, %d failed (worker lost), %d batches re-queued",
            released,
            lost,
            requeued,
        )
    return {"released_items": released, "lost_items": lost, "requeued_batches": requeued}


def recover_task() -> str:
    """The periodic django-q2 job."""
    result = recover()
    return ", ".join(f"{k}={v}" for k, v in result.items())
