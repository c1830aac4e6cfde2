"""The operations registry: what a batch does to each of its items.

An operation validates its payload, opens what its items share (an HTTP client), and processes
one item, returning a JSON result or raising ``RetryableError`` (tried again with backoff) or
``PermanentError`` (the item fails at once). A result object with a ``warning`` succeeded with
something an operator should see (the cache it had to invalidate was unreachable): the executor
keeps the warning as the item's error text. Apps add operations with ``register_operation``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings

from batches.http_deadline import deadline, deadline_client
from batches.invalidation import CacheInvalidator, InvalidationError, validate_templates
from opsconsole.api import BadRequest
from opsconsole.excerpt import error_excerpt

if TYPE_CHECKING:
    from batches.models import BatchItem, BatchOperation


class RetryableError(Exception):
    """A failure that may pass: 5xx, timeouts, connection errors."""


class PermanentError(Exception):
    """A failure that will not pass by trying again: 4xx, a rejected item."""


class Operation:
    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Items of a chunk run on threads at once; False for operations that write to the database.
    concurrent: ClassVar[bool] = False

    def validate_payload(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """(normalised payload, errors keyed "payload.<field>")."""
        return dict(payload), {}

    def item_timeout(self, payload: dict[str, Any]) -> float:
        """The longest one item may take: the lease of a chunk is built from it."""
        return 30.0

    @contextlib.contextmanager
    def session(self, batch: BatchOperation) -> Iterator[Any]:
        yield None

    def process(self, batch: BatchOperation, item: BatchItem, session: Any) -> Any:
        raise NotImplementedError


_registry: dict[str, Operation] = {}


def register_operation(operation_class: type[Operation]) -> type[Operation]:
    _registry[operation_class.name] = operation_class()
    return operation_class


def get_operation(name: str) -> Operation | None:
    return _registry.get(name)


def operation_names() -> list[str]:
    return sorted(_registry)


def substitute_key(value: Any, key: str) -> Any:
    """``{key}`` replaced by the item key in every string of a JSON value."""
    if isinstance(value, str):
        return value.replace("{key}", key)
    if isinstance(value, list):
        return [substitute_key(v, key) for v in value]
    if isinstance(value, dict):
        return {k: substitute_key(v, key) for k, v in value.items()}
    return value


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Read of an answer: enough for the excerpt kept on the item, bounded whatever the server sends.
MAX_RESPONSE_BYTES = 64 * 1024


def host_allowed(host: str) -> bool:
    """Whether BATCH_HTTP_ALLOWED_HOSTS (read now, empty: any host) lets batches send to
    ``host``. ``.example.com`` stands for example.com and its subdomains."""
    allowed = settings.BATCH_HTTP_ALLOWED_HOSTS
    if not allowed:
        return True
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if pattern.startswith("."):
            if host == pattern[1:] or host.endswith(pattern):
                return True
        elif host == pattern:
            return True
    return False


def url_with_key(template: str, key: str) -> str:
    """The item's URL: the key percent-encoded as one path segment or query value, so that
    ``/``, ``?``, ``#``, ``%`` or spaces in a key cannot change where the request goes."""
    encoded = quote(key, safe="")
    if encoded in (".", ".."):
        # A bare dot segment would be resolved away by the client ("/items/.." is "/").
        encoded = encoded.replace(".", "%2E")
    return template.replace("{key}", encoded)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class HttpSession:
    """What the items of one batch run share: the HTTP client, and the client of the
    application's Redis when the batch invalidates cache keys."""

    client: httpx.Client
    cache: CacheInvalidator | None = None


@register_operation
class HttpOperation(Operation):
    name = "http"
    description = "one HTTP request per item, with an Idempotency-Key of batch and item"
    concurrent = True
    defaults: ClassVar[dict[str, Any]] = {
        "method": "POST",
        "expect_status": [200, 201, 202, 204],
        "timeout": 10,
    }
    allowed = ("url", "method", "body", "headers", "expect_status", "timeout", "invalidate")

    def validate_payload(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        errors: dict[str, str] = {}
        for key in payload:
            if key not in self.allowed:
                errors[f"payload.{key}"] = f"unknown field; allowed: {', '.join(self.allowed)}"
        url = payload.get("url")
        if url is None:
            errors["payload.url"] = "is required, e.g. https://api.example/items/{key}"
        elif not isinstance(url, str) or len(url) > 2000:
            errors["payload.url"] = "must be a URL string of at most 2000 characters"
        else:
            try:
                parts = urlsplit(url)
                scheme_ok = parts.scheme in ("http", "https")
                host = parts.hostname or ""
            except ValueError:
                scheme_ok, host = False, ""
            if not scheme_ok:
                errors["payload.url"] = "scheme must be http or https"
            elif "{key}" in parts.netloc:
                errors["payload.url"] = "{key} may be in the path or the query, not in the host"
            elif not host:
                errors["payload.url"] = "has no host"
            elif not host_allowed(host):
                errors["payload.url"] = (
                    f"host {host!r} is not in BATCH_HTTP_ALLOWED_HOSTS "
                    f"({', '.join(settings.BATCH_HTTP_ALLOWED_HOSTS)})"
                )
        method = payload.get("method", self.defaults["method"])
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            errors["payload.method"] = f"must be one of {', '.join(HTTP_METHODS)}"
        headers = payload.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and "\n" not in v and "\r" not in v
            for k, v in headers.items()
        ):
            errors["payload.headers"] = "must be an object of header name to string value"
        expect = payload.get("expect_status", self.defaults["expect_status"])
        if (
            not isinstance(expect, list)
            or not expect
            or not all(
                isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in expect
            )
        ):
            errors["payload.expect_status"] = (
                "must be a non-empty list of HTTP status codes (100-599)"
            )
        timeout = payload.get("timeout", self.defaults["timeout"])
        if not _is_number(timeout) or not 0.1 <= timeout <= 60:
            errors["payload.timeout"] = "must be a number of seconds between 0.1 and 60"
        if "invalidate" in payload and (problem := validate_templates(payload["invalidate"])):
            errors["payload.invalidate"] = problem
        if errors:
            return {}, errors
        normalised = {**self.defaults, **payload, "method": method.upper()}
        return normalised, {}

    def item_timeout(self, payload: dict[str, Any]) -> float:
        return float(payload.get("timeout", self.defaults["timeout"]))

    @contextlib.contextmanager
    def session(self, batch: BatchOperation) -> Iterator[HttpSession]:
        # As many connections as the executor has threads: no request waits for the pool.
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        cache = CacheInvalidator() if batch.payload.get("invalidate") else None
        try:
            with deadline_client(
                self.item_timeout(batch.payload),
                limits=limits,
                headers={"User-Agent": "opsconsole-batches/1"},
            ) as client:
                yield HttpSession(client, cache)
        finally:
            if cache is not None:
                cache.close()

    def process(self, batch: BatchOperation, item: BatchItem, session: HttpSession) -> Any:
        """One request, over within the item timeout in total (``http_deadline``): the chunk's
        lease is built from that timeout, so the item is never sent twice at once. Once it
        succeeded, the payload's ``invalidate`` keys are deleted; a failure there is kept on
        the item as a warning and does not undo the success (the request was made)."""
        result = self._request(batch, item, session.client)
        templates = batch.payload.get("invalidate")
        if templates:
            try:
                if session.cache is None:
                    raise InvalidationError("CACHE_INVALIDATE_REDIS_URL is not set")
                result["invalidated"] = session.cache.invalidate(templates, item.key).as_json()
            except InvalidationError as exc:
                result["invalidated"] = None
                result["warning"] = f"succeeded, but the cache was not invalidated: {exc}"
        return result

    def _request(self, batch: BatchOperation, item: BatchItem, session: httpx.Client) -> Any:
        payload = batch.payload
        key = item.key
        url = url_with_key(payload["url"], key)
        host = urlsplit(url).hostname or ""
        if not host_allowed(host):
            raise PermanentError(f"host {host!r} is not in BATCH_HTTP_ALLOWED_HOSTS")
        # As UTF-8 bytes: httpx encodes str header values as ASCII, which fails on "café".
        idempotency_key = f"{batch.id}:{key}".encode()
        headers = {**payload.get("headers", {}), "Idempotency-Key": idempotency_key}
        kwargs: dict[str, Any] = {"headers": headers}
        if "body" in payload and payload["method"] not in ("GET", "DELETE"):
            kwargs["json"] = substitute_key(payload["body"], key)
        timeout = self.item_timeout(payload)
        try:
            with (
                deadline(timeout),
                session.stream(payload["method"], url, **kwargs) as response,
            ):
                body = bytearray()
                for part in response.iter_bytes():
                    body += part
                    if len(body) >= MAX_RESPONSE_BYTES:
                        break
        except httpx.TimeoutException:
            raise RetryableError(f"timed out after {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None
        text = bytes(body).decode(response.encoding or "utf-8", errors="replace")
        if response.status_code in payload["expect_status"]:
            return {"status": response.status_code, "body": text[:500]}
        # A target's error page is reduced to its title or first line (opsconsole.excerpt).
        message = error_excerpt(f"HTTP {response.status_code}: {text}")
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise RetryableError(message)
        raise PermanentError(message)


@register_operation
class BacklogOperation(Operation):
    name = "backlog"
    description = "adds each item to the backlog (source, key, reason, payload)"
    allowed = ("source", "reason", "payload")

    def validate_payload(self, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        errors: dict[str, str] = {}
        for key in payload:
            if key not in self.allowed:
                errors[f"payload.{key}"] = f"unknown field; allowed: {', '.join(self.allowed)}"
        source = payload.get("source", "batch")
        if not isinstance(source, str) or not source.strip() or len(source) > 100:
            errors["payload.source"] = "must be a non-empty string of at most 100 characters"
        reason = payload.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 500:
            errors["payload.reason"] = "must be a string of at most 500 characters"
        entry_payload = payload.get("payload")
        if entry_payload is not None and not isinstance(entry_payload, dict):
            errors["payload.payload"] = "must be an object"
        if errors:
            return {}, errors
        return {"source": source, "reason": reason, "payload": entry_payload}, {}

    def item_timeout(self, payload: dict[str, Any]) -> float:
        return 5.0

    def process(self, batch: BatchOperation, item: BatchItem, session: Any) -> Any:
        # Imported here: the backlog app is optional for batches, and must not be needed to
        # import this module.
        from backlog.services import enqueue

        payload = batch.payload
        try:
            entry = enqueue(
                payload.get("source") or "batch",
                item.key,
                payload.get("reason") or "",
                substitute_key(payload.get("payload"), item.key),
            )
        except BadRequest as exc:
            raise PermanentError(f"rejected by the backlog: {exc.describe_fields()}") from None
        return {
            "backlog_entry": getattr(entry, "pk", None),
            "created": bool(getattr(entry, "was_created", True)),
        }
