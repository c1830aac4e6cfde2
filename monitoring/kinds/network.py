"""Kinds that probe a service over the network: http, redis, database."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
from django.conf import settings

from monitoring.checks.sql import SqlTargetError, fetch_one
from monitoring.kinds import (
    CheckKind,
    ConfigError,
    Observation,
    check_known_keys,
    mask_secrets,
    register,
    require_str,
)
from monitoring.kinds.common import accept_database_key, choice, validate_database_target
from monitoring.kinds.host import alert_threshold
from monitoring.models import CheckStatus

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check

_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class WireTime:
    """How long a request took on the wire, as httpx's ``trace`` extension reports its steps.

    From the first network step (resolving and connecting, or sending on a connection already
    open) to the end of the last response body, across redirects. What comes before the first
    step is the prober's own time, not the target's: waiting for a connection from the client's
    pool, for a thread to be scheduled, for the client to be built. Timing the call instead
    counted that too, and under load a 100 ms endpoint was measured at over a second.
    """

    def __init__(self) -> None:
        # A transport that reports no steps (none of httpx's own) is timed by the call instead.
        self.called = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None

    def __call__(self, event_name: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        if event_name.endswith("receive_response_body.complete"):
            self.last = now

    def elapsed_ms(self) -> float:
        first = self.called if self.first is None else self.first
        last = time.monotonic() if self.last is None else self.last
        return (last - first) * 1000


@register
class HttpKind(CheckKind):
    name = "http"
    label = "HTTP endpoint"
    unit = " ms"
    default_warn = 1000
    default_crit = 5000

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(
            config,
            {"url", "method", "expect_status", "contains", "headers", "body", "json", "verify_tls"},
            errors,
        )
        url = require_str(config, "url", errors)
        if url and urlparse(url).scheme not in ("http", "https"):
            errors["config.url"] = f"must start with http:// or https://, got {url!r}"
        method = str(config.get("method", "GET")).upper()
        if method not in _HTTP_METHODS:
            errors["config.method"] = f"must be one of {', '.join(_HTTP_METHODS)}"
        expect = config.get("expect_status", [200])
        expect_list = expect if isinstance(expect, list) else [expect]
        if not expect_list or not all(
            isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599
            for code in expect_list
        ):
            errors["config.expect_status"] = "must be an HTTP status code or a list of them"
        if "contains" in config and not isinstance(config["contains"], str):
            errors["config.contains"] = "must be a string"
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            errors["config.headers"] = "must be a mapping of header name to string value"
        if errors:
            raise ConfigError(errors)
        normalised = dict(config, method=method, expect_status=expect_list)
        return normalised

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        config = check.config
        url = config["url"]
        wire = WireTime()
        try:
            response = ctx.http.request(
                config.get("method", "GET"),
                url,
                headers=config.get("headers") or None,
                content=config.get("body"),
                json=config.get("json"),
                timeout=check.timeout_seconds,
                extensions={"trace": wire},
            )
        except httpx.TimeoutException:
            return Observation(error=f"timed out after {check.timeout_seconds:g}s")
        except httpx.HTTPError as exc:
            return Observation(error=f"unreachable: {type(exc).__name__}: {exc}")
        latency = wire.elapsed_ms()
        details = {"status_code": response.status_code, "url": mask_secrets(url)}
        expected = config.get("expect_status", [200])
        if response.status_code not in expected:
            return Observation(
                value=round(latency, 1),
                status=CheckStatus.CRITICAL,
                message=f"HTTP {response.status_code}, expected {', '.join(map(str, expected))}",
                details=details,
            )
        keyword = config.get("contains")
        if keyword and keyword not in response.text:
            return Observation(
                value=round(latency, 1),
                status=CheckStatus.CRITICAL,
                message=f"response does not contain {keyword!r}",
                details=details,
            )
        return Observation(
            value=round(latency, 1),
            message=f"HTTP {response.status_code} in {latency:.0f} ms",
            details=details,
        )


@register
class RedisKind(CheckKind):
    name = "redis"
    label = "Redis"

    _metrics = ("memory", "latency", "keys")

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(config, {"url", "metric", "prefix"}, errors)
        url = require_str(config, "url", errors)
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            errors["config.url"] = "must be a redis:// URL"
        choice(config, "metric", self._metrics, errors, "memory")
        if config.get("metric") == "keys":
            require_str(config, "prefix", errors)
        if errors:
            raise ConfigError(errors)
        return {**config, "metric": config.get("metric", "memory")}

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        metric = config.get("metric", "memory")
        if metric == "memory":
            warn, crit = alert_threshold("REDIS_ALERT_THRESHOLD", 90)
            return warn, crit, "above"
        if metric == "latency":
            return 100, 1000, "above"
        return None, None, "above"

    def unit_for(self, config: dict[str, Any]) -> str:
        return {"memory": " %", "latency": " ms", "keys": ""}[config.get("metric", "memory")]

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        import redis

        config = check.config
        # Per call, not per probe: REDIS_TIMEOUT caps it so that a hanging Redis answers
        # "unreachable" quickly, also when a check is run from a page.
        timeout = min(check.timeout_seconds, settings.REDIS_TIMEOUT)
        client = redis.Redis.from_url(
            config["url"], socket_connect_timeout=timeout, socket_timeout=timeout
        )
        try:
            started = time.monotonic()
            client.ping()
            latency = (time.monotonic() - started) * 1000
            info = client.info("memory")
            used = int(info.get("used_memory", 0))
            limit = int(info.get("maxmemory", 0)) or int(info.get("total_system_memory", 0))
            memory_pct = round(used * 100 / limit, 4) if limit else 0.0
            details: dict[str, Any] = {
                "latency_ms": round(latency, 2),
                "used_memory_bytes": used,
                "maxmemory_bytes": int(info.get("maxmemory", 0)),
                "memory_pct": memory_pct,
            }
            metric = config.get("metric", "memory")
            if metric == "keys":
                count = sum(1 for _ in client.scan_iter(match=f"{config['prefix']}*", count=1000))
                details["keys"] = count
                return Observation(
                    value=count, message=f"{count} keys under {config['prefix']!r}", details=details
                )
            if metric == "latency":
                return Observation(
                    value=round(latency, 2), message=f"PING in {latency:.1f} ms", details=details
                )
            basis = "maxmemory" if info.get("maxmemory") else "system memory"
            return Observation(
                value=memory_pct,
                message=f"memory {memory_pct:.1f} % of {basis}, PING {latency:.1f} ms",
                details=details,
            )
        except redis.exceptions.TimeoutError:
            return Observation(error=f"unreachable: timed out after {timeout:g}s")
        except (redis.exceptions.RedisError, OSError) as exc:
            return Observation(error=f"unreachable: {exc}")
        finally:
            client.close()


@register
class DatabaseKind(CheckKind):
    name = "database"
    runs_sql = True
    label = "Database"
    unit = " ms"
    default_warn = 500
    default_crit = 2000

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        config = accept_database_key(config, errors)
        check_known_keys(config, {"alias", "dsn"}, errors)
        validate_database_target(config, errors)
        if errors:
            raise ConfigError(errors)
        return dict(config) if "dsn" in config else {"alias": config.get("alias", "default")}

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        started = time.monotonic()
        try:
            fetch_one(check.config, "SELECT 1", timeout=check.timeout_seconds, authored=False)
        except SqlTargetError as exc:
            return Observation(error=f"unreachable: {exc}")
        latency = (time.monotonic() - started) * 1000
        return Observation(value=round(latency, 2), message=f"SELECT 1 in {latency:.1f} ms")
