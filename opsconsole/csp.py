"""The Content-Security-Policy of every response.

Scripts and styles come only from the console's own static files: the pages have no inline
scripts, event-handler attributes, ``<style>`` blocks or ``style=""`` attributes, so an injected
tag or attribute that slipped past escaping can neither run code nor restyle a page. The Django
admin needs nothing more. docs/pages.md explains how to keep templates within the policy.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # data: for the small icons some browsers and the admin inline as data URLs.
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Sets the policy on every response that does not carry its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
