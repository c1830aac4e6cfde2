"""JSON API plumbing: API-key or staff-session authentication and JSON errors."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from opsconsole.models import ApiKey, ApiScope


def json_error(status: int, error: str, details: dict[str, Any] | None = None) -> JsonResponse:
    body: dict[str, Any] = {"error": error}
    if details:
        body["details"] = details
    return JsonResponse(body, status=status)


class BadRequest(DjangoBadRequest):
    """The one error for bad input, whoever reads it: a message, what is wrong per field, and
    the HTTP ``status`` the API answers with (400, or 404, 409, 413). Services raise it;
    ``api_view`` answers it as JSON, the commands turn it into CommandError. It is Django's
    BadRequest too, so a page that lets it through gets Django's 400 page."""

    def __init__(self, error: str, details: dict[str, str] | None = None, status: int = 400):
        self.error, self.details, self.status = error, details or {}, status
        super().__init__(error)

    def describe_fields(self) -> str:
        """``field: problem; field: problem``, for a command's error line."""
        return "; ".join(f"{name}: {problem}" for name, problem in self.details.items())

    def __str__(self) -> str:
        fields = self.describe_fields()
        return f"{self.error} ({fields})" if fields else self.error


# Limits of what any JSON body may hold, checked before a view sees it. Deeper or larger values
# have no use here and cost the parser, the validators and PostgreSQL (jsonb refuses NUL and
# lone surrogates; a 5,000-digit integer takes quadratic time to convert).
MAX_JSON_DEPTH = 64
MAX_INTEGER_DIGITS = 30
MAX_NUMBER_CHARS = 100


class _Refused(ValueError):
    """A value the strict parser refuses; the message is safe to show (it never quotes input)."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _strict_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Refused(f"an integer with more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _strict_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number longer than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("a number too large to represent")
    return value


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (invalid unicode)"
    return None


def _label(key: str) -> str:
    return key if key.isidentifier() and len(key) <= 40 else "<key>"


def _child(where: str, step: str) -> str:
    return f"{where}{step}" if step.startswith("[") or not where else f"{where}.{step}"


def _unstorable(value: Any) -> tuple[str, str] | None:
    """(where, why) of the first value that cannot be stored: too deep, a NUL character or a
    lone surrogate; ``where`` is a field path such as ``payload.note`` or ``[2].key``. Walks
    with an explicit stack: a recursive walk would itself hit the recursion limit."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return "body", f"is nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            if problem := _string_problem(item):
                return where or "body", problem
        elif isinstance(item, list):
            stack.extend((v, _child(where, f"[{i}]"), depth + 1) for i, v in enumerate(item))
        elif isinstance(item, dict):
            for key, v in item.items():
                if problem := _string_problem(key):
                    return where or "body", f"{problem} in a key"
                stack.append((v, _child(where, _label(key)), depth + 1))
    return None


def parse_json_body(request: HttpRequest) -> Any:
    """The one strict JSON reader of the API: a body over the size limit is 413; invalid UTF-8
    or JSON, NaN/Infinity, huge numbers, deep nesting, NUL characters and lone surrogates are
    400 with the reason in ``details`` under the field's path (``body`` when it has none).
    Nothing about the body is trusted past this."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise body_too_large() from None
    if not raw:
        raise BadRequest("body is empty", {"body": "send a JSON document"})
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "body is not valid UTF-8", {"body": f"invalid byte at position {exc.start}"}
        ) from None
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_strict_int,
            parse_float=_strict_float,
        )
    except _Refused as exc:
        raise BadRequest("body is not acceptable JSON", {"body": f"contains {exc}"}) from None
    except RecursionError:
        raise BadRequest(
            "body is not acceptable JSON",
            {"body": f"is nested deeper than {MAX_JSON_DEPTH} levels"},
        ) from None
    except ValueError as exc:  # JSONDecodeError and int/float conversion limits
        raise BadRequest("body is not valid JSON", {"body": str(exc)[:200]}) from None
    if found := _unstorable(value):
        where, problem = found
        raise BadRequest("body is not acceptable JSON", {where: problem})
    return value


def int_param(
    raw: str | None,
    name: str,
    *,
    default: int,
    minimum: int,
    maximum: int,
    error: str = "invalid filter",
) -> int:
    """A whole-number query parameter in ASCII digits (``int()`` also takes ``²``-like and
    thousands-long digit strings), or BadRequest naming the parameter and the range."""
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12 and minimum <= int(raw) <= maximum):
        raise BadRequest(error, {name: f"must be a whole number from {minimum} to {maximum}"})
    return int(raw)


def body_too_large() -> BadRequest:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return BadRequest(
        "request body too large",
        {"body": f"at most {limit} bytes (REQUEST_MAX_BODY_BYTES)"},
        status=413,
    )


def _raw_key(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-Api-Key") or None


def api_view(
    *, scope: str = ApiScope.READ, methods: tuple[str, ...] = ("GET",)
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Authenticates with an API key (``Authorization: Bearer`` or ``X-Api-Key``) or a staff
    session; writes by session also need the CSRF token. Errors are JSON."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = json_error(
                    405, f"method {request.method} not allowed; use {', '.join(methods)}"
                )
                response["Allow"] = ", ".join(methods)
                return response
            raw = _raw_key(request)
            if raw:
                key = ApiKey.authenticate(raw)
                if key is None:
                    return json_error(401, "invalid or revoked API key")
                if not key.allows(scope):
                    return json_error(
                        403, f"this API key has {key.scope} scope; this call needs {scope}"
                    )
                request.api_key = key
            elif request.user.is_authenticated and request.user.is_staff:
                if request.method not in ("GET", "HEAD", "OPTIONS"):
                    reason = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
                    if reason is not None:
                        return json_error(403, "CSRF token missing or incorrect")
                request.api_key = None
            else:
                return json_error(
                    401, "authentication required: send an API key as 'Authorization: Bearer <key>'"
                )
            try:
                return view(request, *args, **kwargs)
            except BadRequest as exc:
                return json_error(exc.status, exc.error, exc.details)

        return wrapper

    return decorator


def actor_of(request: HttpRequest) -> str:
    """Who acted, for audit trails: the user's name, or ``api:<key name>``."""
    key = getattr(request, "api_key", None)
    if key is not None:
        return f"api:{key.name}"
    return request.user.get_username() if request.user.is_authenticated else "anonymous"
