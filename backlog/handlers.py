"""Handlers: what processing an entry means for its source.

``settings.BACKLOG_HANDLERS`` maps a source to the dotted path of a callable ``fn(entry)``
(raise to fail) or to ``webhook:URL``, the built-in handler that POSTs the entry as JSON.
The setting is read each time processing starts, never frozen at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

from opsconsole.redaction import mask_url

if TYPE_CHECKING:
    from backlog.models import BacklogEntry

Handler = Callable[["BacklogEntry"], Any]

WEBHOOK_PREFIX = "webhook:"


class HandlerMissing(Exception):
    """No usable handler for a source: retrying will not help until the setting changes."""


def webhook_body(entry: BacklogEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "source": entry.source,
        "key": entry.key,
        "reason": entry.reason,
        "payload": entry.payload,
        "attempt": entry.attempts + 1,
        "created_at": entry.created_at.isoformat(),
    }


class WebhookHandler:
    """POSTs the entry as JSON; any 2xx answer is a success."""

    def __init__(self, url: str, client: httpx.Client):
        self.url, self.client = url, client

    def __call__(self, entry: BacklogEntry) -> None:
        response = self.client.post(
            self.url,
            json=webhook_body(entry),
            headers={"Idempotency-Key": f"backlog-{entry.pk}-{entry.created_at.timestamp():.0f}"},
        )
        if not 200 <= response.status_code < 300:
            raise RuntimeError(
                f"HTTP {response.status_code} from {mask_url(self.url)}: {response.text[:200]}"
            )

    def describe(self) -> str:
        return f"POST {mask_url(self.url)}"


def handler_setting(source: str) -> str | None:
    value = settings.BACKLOG_HANDLERS.get(source)
    return value if isinstance(value, str) and value.strip() else None


def describe_handler(source: str) -> str:
    """For dry runs: what processing would call, or why it would fail."""
    target = handler_setting(source)
    if target is None:
        return f"no handler: would fail ({missing_message(source)})"
    if target.startswith(WEBHOOK_PREFIX):
        return f"POST {mask_url(target[len(WEBHOOK_PREFIX) :])}"
    return f"call {target}"


def missing_message(source: str) -> str:
    return (
        f"no handler for source {source!r}: set BACKLOG_HANDLERS, e.g. "
        f'BACKLOG_HANDLERS=\'{{"{source}": "myapp.sync.handle"}}\' or '
        f'\'{{"{source}": "webhook:https://example.org/sync"}}\''
    )


class HandlerSet:
    """The handlers of one processing run; resolves each source once and shares one HTTP client."""

    def __init__(self, timeout: float = 10.0):
        self._handlers: dict[str, Handler | HandlerMissing] = {}
        self._client: httpx.Client | None = None
        self._timeout = timeout

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=self._timeout, headers={"User-Agent": "opsconsole-backlog/1"}
            )
        return self._client

    def get(self, source: str) -> Handler:
        if source not in self._handlers:
            self._handlers[source] = self._resolve(source)
        handler = self._handlers[source]
        if isinstance(handler, HandlerMissing):
            raise handler
        return handler

    def _resolve(self, source: str) -> Handler | HandlerMissing:
        target = handler_setting(source)
        if target is None:
            return HandlerMissing(missing_message(source))
        if target.startswith(WEBHOOK_PREFIX):
            url = target[len(WEBHOOK_PREFIX) :].strip()
            if not url.startswith(("http://", "https://")):
                return HandlerMissing(
                    f"BACKLOG_HANDLERS[{source!r}]: webhook URL must start with http:// or "
                    f"https://, got {url!r}"
                )
            return WebhookHandler(url, self.client)
        try:
            handler = import_string(target)
        except ImportError as exc:
            return HandlerMissing(f"BACKLOG_HANDLERS[{source!r}]: cannot import {target!r}: {exc}")
        if not callable(handler):
            return HandlerMissing(f"BACKLOG_HANDLERS[{source!r}]: {target!r} is not callable")
        return handler

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
