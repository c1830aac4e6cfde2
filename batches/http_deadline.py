"""An httpx client whose requests end at a total deadline, whatever the server does.

httpx's timeouts are per phase: the read timeout bounds each wait for bytes, so a server that
trickles one byte a second keeps a request alive for ever, past the lease of the batch item it
serves, and recovery then hands the item to a second worker while the first still sends it.
Here every socket operation gets the time left until the deadline of the request running on
its thread (never more than the phase's own timeout), and fails once the deadline has passed:
connecting, TLS, writing the request, and each read of headers and body.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

# Per request, not per client: the items of a chunk share one client from several threads.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "batch_http_deadline", default=None
)
# Writes are cut into pieces so that a server reading slowly is bounded by the deadline too
# (one socket send may block for the whole timeout it is given).
WRITE_PIECE = 64 * 1024


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Requests made on this thread inside the block end at most ``seconds`` from now."""
    until = time.monotonic() + seconds
    token = _deadline.set(until)
    try:
        yield until
    finally:
        _deadline.reset(token)


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    until = _deadline.get()
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise expired("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_PIECE):
            self._stream.write(
                buffer[start : start + WRITE_PIECE], _time_left(timeout, httpcore.WriteTimeout)
            )

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(
            ssl_context, server_hostname, _time_left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host,
            port,
            _time_left(timeout, httpcore.ConnectTimeout),
            local_address,
            socket_options,
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(
            path, _time_left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool of deadline-bound sockets. Direct connections
    only: a proxy from the environment would bring its own, unbounded, transport."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx has no parameter for the network backend: the pool it builds, with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


def deadline_client(timeout: float, *, limits: httpx.Limits, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` for use with ``deadline()``; ``trust_env`` is off (see above)."""
    return httpx.Client(
        timeout=timeout,
        limits=limits,
        transport=DeadlineTransport(limits=limits),
        trust_env=False,
        **kwargs,
    )
