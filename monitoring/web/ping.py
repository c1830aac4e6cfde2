"""Ping endpoints for heartbeat checks: ``/ping/<uuid>`` and its start, fail and exit-code forms.

No login: the UUID is the secret. Kept lean because cron jobs across a fleet all ping at the
top of the hour: a healthy ping to a check without an open alert is one lookup, one INSERT
and one guarded UPDATE, with no transaction and no alert lookup (``Check.has_open_alert``,
``record_unchanged``); any other ping is recorded under the check's row lock.
"""

from __future__ import annotations

import time
import uuid

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from monitoring.kinds.heartbeat import MAX_BODY_BYTES, PingEvent
from monitoring.models import Check
from monitoring.models.checks import (
    PendingRun,
    check_by_ping_uuid,
    record_runs,
    record_unchanged,
)

_ALLOWED = ("GET", "POST", "HEAD")


def _text(status: int, body: str) -> HttpResponse:
    response = HttpResponse(body, content_type="text/plain; charset=utf-8", status=status)
    response["Cache-Control"] = "no-store"
    # Set here: pings skip CommonMiddleware, which sets it for other answers.
    response["Content-Length"] = str(len(response.content))
    return response


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def read_body(request: HttpRequest) -> bytes:
    """At most the kept size plus one byte (to know whether more was sent), never the whole
    log of a runaway job. A chunked body has no Content-Length, so Django's request stream is
    empty; the server's own stream is read instead when the server marks it as ending with the
    body (``wsgi.input_terminated``: gunicorn does), else a read could wait for ever."""
    if not request.META.get("CONTENT_LENGTH"):
        stream = request.META.get("wsgi.input")
        if stream is not None and request.META.get("wsgi.input_terminated"):
            return stream.read(MAX_BODY_BYTES + 1)
        return b""
    return request.read(MAX_BODY_BYTES + 1)


def storable_text(raw: bytes | str) -> str:
    """Text any database stores: invalid UTF-8 as ``\\xNN`` escapes, NUL (which PostgreSQL
    refuses in text and jsonb) as ``\\x00``, lone surrogates as ``?``. Nothing is dropped,
    so the ping is recorded whatever the job sent."""
    text = raw.decode("utf-8", errors="backslashreplace") if isinstance(raw, bytes) else raw
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _ping(
    request: HttpRequest, ping_uuid: uuid.UUID, event: str, exit_code: int | None = None
) -> HttpResponse:
    started = time.monotonic()
    if request.method not in _ALLOWED:
        response = _text(405, "method not allowed: use GET, POST or HEAD\n")
        response["Allow"] = ", ".join(_ALLOWED)
        return response
    if exit_code is not None and not 0 <= exit_code <= 255:
        return _text(400, "exit code must be from 0 to 255\n")
    body = read_body(request) if request.method == "POST" else b""
    truncated = len(body) > MAX_BODY_BYTES or _declared_length(request) > MAX_BODY_BYTES
    details = {
        "method": request.method,
        "remote_addr": request.META.get("REMOTE_ADDR", ""),
        "user_agent": storable_text(request.META.get("HTTP_USER_AGENT", "")[:200]),
    }
    if body:
        details["body"] = storable_text(body[:MAX_BODY_BYTES])
    if truncated:
        details["body_truncated"] = True

    def pending(check: Check) -> PendingRun:
        now = timezone.now()
        observation = check.kind_impl.ping_observation(
            check, event, now=now, exit_code=exit_code, details=dict(details)
        )
        return PendingRun(check, observation, (time.monotonic() - started) * 1000, now)

    check = check_by_ping_uuid(ping_uuid)
    if check is None or not check.kind_impl.pushed:
        return _text(404, "not found: no heartbeat check has this ping URL\n")
    if not record_unchanged(pending(check)):
        # A ping that changes the status, of a check with an alert, or that raced another
        # record: under the row lock, from the state as it is now (the observation reads it:
        # a pending start).
        with transaction.atomic():
            check = Check.objects.select_for_update().filter(pk=check.pk).first()
            if check is None:
                return _text(404, "not found: no heartbeat check has this ping URL\n")
            record_runs([pending(check)], isolate=False, locked=True)
    if request.method == "HEAD":
        # A HEAD answer has headers only (the WSGI server sends whatever body it is given).
        return _text(200, "")
    return _text(200, "OK\n")


@csrf_exempt
def ping_success(request: HttpRequest, ping_uuid: uuid.UUID) -> HttpResponse:
    return _ping(request, ping_uuid, PingEvent.SUCCESS)


@csrf_exempt
def ping_start(request: HttpRequest, ping_uuid: uuid.UUID) -> HttpResponse:
    return _ping(request, ping_uuid, PingEvent.START)


@csrf_exempt
def ping_fail(request: HttpRequest, ping_uuid: uuid.UUID) -> HttpResponse:
    return _ping(request, ping_uuid, PingEvent.FAIL)


@csrf_exempt
def ping_exit_code(request: HttpRequest, ping_uuid: uuid.UUID, exit_code: int) -> HttpResponse:
    event = PingEvent.SUCCESS if exit_code == 0 else PingEvent.FAIL
    return _ping(request, ping_uuid, event, exit_code=exit_code)
