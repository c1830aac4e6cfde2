"""Login throttling hooks for django-axes: the cool-off, the client address, the lockout page.

Settings are read on every call, so that tests and operators can change them without a restart.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

# AccessAttempt.username is a varchar(255).
USERNAME_MAX_LENGTH = 255


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """How long a username or address stays locked out after too many failed logins."""
    return timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)


def client_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The username a lockout applies to, cut to what the attempts table holds.

    The admin form passes any length to authenticate(); a longer name cannot belong to a user
    (usernames have at most 150 characters), and storing it whole would fail the insert.
    """
    if credentials:
        username = credentials.get(settings.AXES_USERNAME_FORM_FIELD)
    else:
        username = request.POST.get(settings.AXES_USERNAME_FORM_FIELD)
    return None if username is None else str(username)[:USERNAME_MAX_LENGTH]


def client_address(request: HttpRequest) -> str | None:
    """The address a lockout applies to.

    Behind the TLS proxy every request comes from the proxy, so one attacker would lock everybody
    out: there the right-most X-Forwarded-For entry counts, the one our own proxy appended (the
    entries left of it are whatever the client sent). Without the proxy the header is ignored,
    since anyone could forge it to dodge the address limit.
    """
    remote = _ip_or_none(request.META.get("REMOTE_ADDR", ""))
    if not settings.BEHIND_TLS_PROXY:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    # A malformed entry falls back to the proxy's address: the lockout table stores a real IP.
    return _ip_or_none(forwarded[-1]) or remote


def _ip_or_none(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """429 with a page that says what happened and when to try again."""
    return render(
        request,
        "registration/locked_out.html",
        {
            **admin.site.each_context(request),
            "title": "Too many failed logins",
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "lockout_minutes": settings.LOGIN_LOCKOUT_MINUTES,
        },
        status=429,
    )
