"""``Idempotency-Key`` for API writes: a retry with the same key answers the first result.

The key is claimed inside the view's own write transaction (the service calls
``claim_idempotency_key()`` first thing in it), so the key is committed with everything the
request created, or not at all, and parsing and validating a large body happen before any
lock is taken (SQLite's write lock is held only for the writes). The answer is stored right
after the view returns. Two requests racing with one key: the unique constraint lets one
claim win; the other's transaction rolls back and it answers the winner's result.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from opsconsole.api import BadRequest, json_error
from opsconsole.models import IdempotentRequest

HEADER = "Idempotency-Key"
# Printable ASCII without spaces at the ends: UUIDs, ULIDs, "order-42-attempt" …
_KEY_RE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")


def _principal(request: HttpRequest) -> str:
    key = getattr(request, "api_key", None)
    if key is not None:
        return f"key:{key.pk}"
    return f"user:{request.user.pk}"


def _fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.get_full_path()):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


# Longest wait for a racing request's answer to be stored before answering 409.
ANSWER_WAIT_SECONDS = 5.0


@dataclass
class _Pending:
    scope: str
    principal: str
    key: str
    fingerprint: str
    claimed: bool = False


_pending: contextvars.ContextVar[_Pending | None] = contextvars.ContextVar(
    "idempotency_pending", default=None
)


class KeyTaken(Exception):
    """Another request committed this key first; raised inside the write transaction."""


def claim_idempotency_key() -> None:
    """Claim the request's ``Idempotency-Key``, if it has one, in the caller's transaction.

    Services call this first inside the transaction that writes the request's rows; outside
    an ``@idempotent`` view it does nothing.
    """
    pending = _pending.get()
    if pending is None or pending.claimed:
        return
    try:
        # A savepoint: the failed insert must not poison the caller's transaction on PostgreSQL.
        with transaction.atomic():
            IdempotentRequest.objects.create(
                scope=pending.scope,
                principal=pending.principal,
                key=pending.key,
                fingerprint=pending.fingerprint,
                status_code=0,
                body="",
                created_at=timezone.now(),
            )
    except IntegrityError:
        raise KeyTaken(pending.key) from None
    pending.claimed = True


def _stored(pending: _Pending) -> IdempotentRequest | None:
    return IdempotentRequest.objects.filter(
        scope=pending.scope, principal=pending.principal, key=pending.key
    ).first()


def _answer_stored(pending: _Pending, record: IdempotentRequest) -> HttpResponse:
    """The answer for a key already used: replay, 422 for another request, 409 if unfinished."""
    deadline = time.monotonic() + ANSWER_WAIT_SECONDS
    # A racing request that won the key stores its answer a moment after its commit.
    while record.status_code == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        record = _stored(pending) or record
    if record.fingerprint != pending.fingerprint:
        return json_error(
            422,
            f"this {HEADER} was already used for a different request",
            {HEADER: "use a new key for a new request"},
        )
    if record.status_code == 0:
        response = json_error(
            409,
            f"the first request with this {HEADER} has not finished answering",
            {HEADER: "retry in a few seconds with the same key"},
        )
        response["Retry-After"] = "5"
        return response
    response = HttpResponse(record.body, status=record.status_code, content_type="application/json")
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(scope: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """For an authenticated write view (inside ``api_view``): honours ``Idempotency-Key``.

    The view's service claims the key in its write transaction (``claim_idempotency_key``);
    the 2xx answer is stored right after. A request refused before writing leaves the key
    unused, so the client may retry it with the same key. The same key with a different
    request answers 422 and changes nothing.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            raw = request.headers.get(HEADER)
            if raw is None:
                return view(request, *args, **kwargs)
            if not _KEY_RE.match(raw):
                raise BadRequest(
                    f"invalid {HEADER} header",
                    {HEADER: "use 1 to 255 printable ASCII characters, e.g. a UUID"},
                )
            pending = _Pending(scope, _principal(request), raw, _fingerprint(request))
            expired_before = timezone.now() - timedelta(
                hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS
            )
            # A key past its retention that housekeeping has not deleted yet counts as unused.
            IdempotentRequest.objects.filter(
                scope=scope, principal=pending.principal, key=raw, created_at__lt=expired_before
            ).delete()
            record = _stored(pending)
            if record is not None:
                return _answer_stored(pending, record)
            token = _pending.set(pending)
            try:
                response = view(request, *args, **kwargs)
            except KeyTaken:
                return _answer_stored(pending, _stored(pending))
            finally:
                _pending.reset(token)
            if pending.claimed and not response.streaming:
                IdempotentRequest.objects.filter(
                    scope=scope, principal=pending.principal, key=raw, status_code=0
                ).update(status_code=response.status_code, body=response.content.decode())
            return response

        return wrapper

    return decorator
