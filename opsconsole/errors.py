"""Errors at the edge: every request gets a request id; ``/api/…`` always answers JSON (413 for an
oversized body, 500 with the request id for a bug); a NUL character in a URL is refused with a
400 everywhere but ``/ping/…`` (PostgreSQL cannot compare text holding one); ``/ping/…`` goes
to its view without the middleware meant for people (``DirectPathMiddleware``)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import (
    BadRequest as DjangoBadRequest,
)
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, get_resolver

from opsconsole.api import BadRequest, body_too_large, json_error
from opsconsole.logging import job_context

logger = logging.getLogger("opsconsole.errors")

API_PREFIX = "/api/"
# Pings are never refused for their URL: a job's heartbeat must land whatever it appends.
PING_PREFIX = "/ping/"
# A proxy's request id is kept when it looks like one; anything else is replaced, never echoed.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
# What a client needs from an error that is turned into JSON.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Vary")


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def _request_id(request: HttpRequest) -> str:
    # META, not request.headers: building the headers mapping is a visible share of a ping.
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _url_problem(request: HttpRequest) -> str | None:
    """Why the URL cannot be served (a NUL anywhere; too many parameters)."""
    if "\x00" in request.path_info:
        return "the path contains a NUL character"
    try:
        params = request.GET
    except SuspiciousOperation as exc:  # TooManyFieldsSent
        return str(exc)
    for key, values in params.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return "a query parameter contains a NUL character"
    return None


class ApiErrorMiddleware:
    """Placed near the top of MIDDLEWARE so that its request id covers every later log line."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = _request_id(request)
        request.request_id = request_id
        with job_context(request_id=request_id):
            response = self._answer(request)
        response["X-Request-Id"] = request_id
        return response

    def _answer(self, request: HttpRequest) -> HttpResponse:
        api = is_api(request)
        if not request.path_info.startswith(PING_PREFIX):
            if problem := _url_problem(request):
                if api:
                    return json_error(400, "invalid request URL", {"url": problem})
                # Django's own 400 page, as for any other bad request to a page.
                raise DjangoBadRequest(problem)
        if api and _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            # Refused before a byte is read; the view would get RequestDataTooBig anyway.
            error = body_too_large()
            return json_error(error.status, error.error, error.details)
        response = self.get_response(request)
        if api and response.status_code >= 400 and not _is_json(response):
            # Django's own answers (unknown URL, 405 from require_GET, CSRF) as JSON.
            converted = _as_json(request, response.status_code)
            for header in _KEPT_HEADERS:
                if header in response:
                    converted[header] = response[header]
            return converted
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Exceptions out of ``/api/`` views; pages keep Django's error pages."""
        if not is_api(request):
            return None
        if isinstance(exception, RequestDataTooBig):
            error = body_too_large()
            return json_error(error.status, error.error, error.details)
        if isinstance(exception, BadRequest):  # raised outside api_view: same JSON answer
            return json_error(exception.status, exception.error, exception.details)
        if isinstance(exception, SuspiciousOperation | DjangoBadRequest | MultiPartParserError):
            return json_error(400, "bad request", {"request": str(exception)[:200]})
        if isinstance(exception, Http404):
            return _as_json(request, 404)
        if isinstance(exception, PermissionDenied):
            return _as_json(request, 403)
        request_id = getattr(request, "request_id", "")
        logger.error(
            "unhandled error on %s %s (request id %s)",
            request.method,
            request.path_info,
            request_id,
            exc_info=exception,
            extra={"request_id": request_id, "status_code": 500},
        )
        return json_error(
            500,
            "internal server error: the request id is in the server log",
            {"request_id": request_id},
        )


# Paths whose views are called straight from ``DirectPathMiddleware``.
DIRECT_PREFIXES = (PING_PREFIX,)


class DirectPathMiddleware:
    """Calls the view of a ``DIRECT_PREFIXES`` path itself, without the middleware after it.

    Those middleware serve people and pages: static files, sessions, CSRF, the user, messages,
    framing, login throttling, per-view metrics. A heartbeat ping has no cookie, no user, no
    form and no page, yet passing through them was about a third of a ping's CPU, and cron
    jobs across a fleet all ping at once. What comes before this one in MIDDLEWARE (request
    totals, the request id, the security headers, the Content-Security-Policy) still applies.
    A path that resolves to no view takes the whole stack, so its 404 page is the usual one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(DIRECT_PREFIXES):
            return self.get_response(request)
        try:
            match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if response is None:  # as Django's handler would: a view must answer
            raise ValueError(f"the view {match.view_name} returned None")
        return response


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _as_json(request: HttpRequest, status: int) -> HttpResponse:
    phrase = HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else ""
    details = {"path": request.path_info[:200], "method": request.method or ""}
    return json_error(status, phrase or f"HTTP {status}", details)
