"""``Idempotency-Key`` for API writes: a retry with the same key answers the first result.

The key is claimed by inserting its row at the start of the request's transaction and the
answer is stored in that same transaction, so the key is either committed with everything
the request created, or not at all. Two requests racing with one key: the unique constraint
makes the second insert wait for the first transaction, then fail, and the second answers
the first's result.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
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


def _claim(
    scope: str, principal: str, key: str, fingerprint: str
) -> tuple[IdempotentRequest, bool]:
    """The stored request of this key (created False), or a new claim (created True)."""
    now = timezone.now()
    expired_before = now - timedelta(hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS)
    fields = {"scope": scope, "principal": principal, "key": key}
    # A key past its retention that housekeeping has not deleted yet counts as unused.
    IdempotentRequest.objects.filter(**fields, created_at__lt=expired_before).delete()
    try:
        with transaction.atomic():
            record = IdempotentRequest.objects.create(
                **fields, fingerprint=fingerprint, status_code=0, body="", created_at=now
            )
        return record, True
    except IntegrityError:
        return IdempotentRequest.objects.get(**fields), False


def _replay(record: IdempotentRequest) -> HttpResponse:
    response = HttpResponse(record.body, status=record.status_code, content_type="application/json")
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(scope: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """For an authenticated write view (inside ``api_view``): honours ``Idempotency-Key``.

    A successful (2xx) answer is stored with the rows the view wrote; any other answer rolls
    the key back with the view's work, so the client may retry it with the same key. The same
    key with a different request answers 422 and changes nothing.
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
            fingerprint = _fingerprint(request)
            with transaction.atomic():
                record, created = _claim(scope, _principal(request), raw, fingerprint)
                if not created:
                    if record.fingerprint != fingerprint:
                        return json_error(
                            422,
                            f"this {HEADER} was already used for a different request",
                            {HEADER: "use a new key for a new request"},
                        )
                    return _replay(record)
                response = view(request, *args, **kwargs)
                if 200 <= response.status_code < 300 and not response.streaming:
                    record.status_code = response.status_code
                    record.body = response.content.decode()
                    record.save(update_fields=["status_code", "body"])
                else:
                    transaction.set_rollback(True)
                return response

        return wrapper

    return decorator
