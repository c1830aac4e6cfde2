"""JSON API plumbing: API-key or staff-session authentication and JSON errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from opsconsole.models import ApiKey, ApiScope


def json_error(status: int, error: str, details: dict[str, Any] | None = None) -> JsonResponse:
    body: dict[str, Any] = {"error": error}
    if details:
        body["details"] = details
    return JsonResponse(body, status=status)


class BadRequest(Exception):
    """Raised inside an API view: answered as 400 (or ``status``) with field details."""

    def __init__(self, error: str, details: dict[str, str] | None = None, status: int = 400):
        self.error, self.details, self.status = error, details or {}, status
        super().__init__(error)


def parse_json_body(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("body is not valid JSON", {"body": str(exc)}) from None


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
