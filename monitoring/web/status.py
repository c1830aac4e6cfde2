"""/metrics (Prometheus) and /api/status (dependency health for load balancers and people)."""

from __future__ import annotations

import hmac
import os
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.models import CheckStatus
from monitoring.observability.readings import (
    overall_state,
    read_database,
    read_queue,
    read_redis,
)
from monitoring.observability.snapshot import exposition
from monitoring.observability.stalled import check_monitoring_stalled, describe
from opsconsole.api import _raw_key
from opsconsole.env import format_duration
from opsconsole.models import ApiKey

_STARTED = time.time()


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            response = HttpResponse(
                "metrics need 'Authorization: Bearer <METRICS_TOKEN>'\n",
                status=401,
                content_type="text/plain",
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def _authenticated(request: HttpRequest) -> bool:
    """Details are for staff and API keys; anyone (a load balancer) gets the states."""
    try:
        if request.user.is_authenticated and request.user.is_staff:
            return True
        raw = _raw_key(request)
        if raw:
            return ApiKey.authenticate(raw) is not None
    except Exception:  # noqa: BLE001 - with the database down, nobody is authenticated
        return False
    return False


def status_components() -> dict[str, dict]:
    now = timezone.now()
    components: dict[str, dict] = {
        "server": {
            "state": "up",
            "detail": f"pid {os.getpid()}, up {format_duration(time.time() - _STARTED)}",
        }
    }
    db = read_database()
    components["database"] = (
        {"state": "up", "detail": f"{db.vendor}, SELECT 1 in {db.latency_ms} ms"}
        if db.up
        else {"state": "down", "detail": f"{db.vendor} unreachable: {db.error}"}
    )
    redis = read_redis()
    if not redis.configured:
        components["cache"] = {"state": "up", "detail": "local memory (REDIS_URL not set)"}
    elif redis.up:
        components["cache"] = {"state": "up", "detail": f"redis, PING {redis.latency_ms} ms"}
    else:
        components["cache"] = {"state": "down", "detail": f"redis unreachable: {redis.error}"}

    if not db.up:
        components["queue"] = {"state": "unknown", "detail": "database unreachable"}
        components["scheduler"] = {"state": "unknown", "detail": "database unreachable"}
        return components
    queue = read_queue(now)
    if queue.reachable:
        # Whether the queue is healthy is the queue check's call; here it is up when its
        # broker answers.
        components["queue"] = {
            "state": "up",
            "detail": f"{queue.broker} broker, {queue.queued} queued, "
            f"{queue.failed_last_hour} failed in the last hour, "
            f"{queue.clusters_alive} cluster{'s' if queue.clusters_alive != 1 else ''} alive",
            "queued": queue.queued,
            "in_flight": queue.in_flight,
            "failed_last_hour": queue.failed_last_hour,
            "error_rate_pct": queue.error_rate_pct,
            "oldest_queued_seconds": queue.oldest_queued_seconds,
            "clusters_alive": queue.clusters_alive,
        }
    else:
        components["queue"] = {
            "state": "down",
            "detail": f"{queue.broker} broker unreachable: {queue.error}",
        }

    scheduler = check_monitoring_stalled(now)
    if not scheduler.enabled_checks:
        components["scheduler"] = {"state": "up", "detail": "no enabled checks"}
    elif scheduler.stalled:
        components["scheduler"] = {
            "state": "down",
            "detail": describe(scheduler),
            "last_run_seconds_ago": scheduler.age_seconds,
            "limit_seconds": scheduler.limit_seconds,
        }
    else:
        last = (
            "never"
            if scheduler.last_run_at is None
            else f"{format_duration(scheduler.age_seconds or 0)} ago"
        )
        components["scheduler"] = {
            "state": "up",
            "detail": f"checks last ran {last} "
            f"(limit {format_duration(scheduler.limit_seconds or 0)})",
            "last_run_seconds_ago": scheduler.age_seconds,
            "limit_seconds": scheduler.limit_seconds,
        }
    return components


def _overall(components: dict[str, dict]) -> dict[str, str]:
    if components["database"]["state"] != "up":
        return {"state": CheckStatus.UNKNOWN, "summary": "database unreachable"}
    state = overall_state()
    return {"state": state.status, "summary": state.summary}


@never_cache
@require_GET
def api_status(request: HttpRequest) -> JsonResponse:
    components = status_components()
    failing = sorted(name for name, c in components.items() if c["state"] != "up")
    overall = _overall(components)
    if not _authenticated(request):
        components = {name: {"state": c["state"]} for name, c in components.items()}
        overall = {"state": overall["state"]}
    body = {
        "status": "down" if failing else "up",
        "failing": failing,
        "components": components,
        # What the checks say (the dashboard's overall state); "status" is whether the console
        # itself can serve, and only that decides the HTTP status.
        "overall": overall,
        "time": timezone.now().isoformat(),
    }
    return JsonResponse(body, status=503 if failing else 200)
