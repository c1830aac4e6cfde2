"""Handlers: what processing an entry means for its source.

``settings.BACKLOG_HANDLERS`` maps a source to the dotted path of a callable ``fn(entry)``
(raise to fail) or to ``webhook:URL``, the built-in handler that POSTs the entry as JSON.
A callable that accepts a ``delivery`` keyword (or ``**kwargs``) is also given a ``Delivery``:
the entry's idempotency key, the attempt number and the time the call may take. The setting is
read each time processing starts, never frozen at import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
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


def idempotency_key(entry: BacklogEntry) -> str:
    """The same for every attempt and every redelivery of one entry (a worker killed before it
    recorded the outcome), different for the next entry of the same key."""
    return f"backlog-{entry.pk}-{entry.created_at.timestamp():.0f}"


@dataclass(frozen=True)
class Delivery:
    """What a handler is told about one call besides the entry."""

    idempotency_key: str
    # 1 on the first call; a redelivery after a worker died repeats the number it had.
    attempt: int
    # Seconds the call may take (BACKLOG_WEBHOOK_TIMEOUT): the run's budget counts on it.
    timeout: float

    @property
    def attempt_key(self) -> str:
        """For receivers that tell attempts apart: stable for this entry and attempt."""
        return f"{self.idempotency_key}-{self.attempt}"


def delivery_for(entry: BacklogEntry, timeout: float) -> Delivery:
    return Delivery(idempotency_key(entry), entry.attempts + 1, timeout)


def webhook_body(entry: BacklogEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "source": entry.source,
        "key": entry.key,
        "reason": entry.reason,
        "payload": entry.payload,
        "attempt": entry.attempts + 1,
        "idempotency_key": idempotency_key(entry),
        "created_at": entry.created_at.isoformat(),
    }


class WebhookHandler:
    """POSTs the entry as JSON; any 2xx answer is a success."""

    def __init__(self, url: str, client: httpx.Client):
        self.url, self.client = url, client

    def __call__(self, entry: BacklogEntry, delivery: Delivery | None = None) -> None:
        key = delivery.idempotency_key if delivery else idempotency_key(entry)
        response = self.client.post(
            self.url, json=webhook_body(entry), headers={"Idempotency-Key": key}
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


def accepts_delivery(handler: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: called the old way
        return False
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == "delivery" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


class HandlerSet:
    """The handlers of one processing run; resolves each source once and shares one HTTP client."""

    def __init__(self, timeout: float = 10.0):
        self._handlers: dict[str, Handler | HandlerMissing] = {}
        self._takes_delivery: dict[str, bool] = {}
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

    def call(self, entry: BacklogEntry, delivery: Delivery) -> Any:
        """Calls the entry's handler, with ``delivery=`` when it accepts the keyword: handlers
        written as ``fn(entry)`` keep working."""
        handler = self.get(entry.source)
        if entry.source not in self._takes_delivery:
            self._takes_delivery[entry.source] = accepts_delivery(handler)
        if self._takes_delivery[entry.source]:
            return handler(entry, delivery=delivery)
        return handler(entry)

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
