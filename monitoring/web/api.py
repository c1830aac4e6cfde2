"""JSON API for checks and the delta view (alerts have theirs in ``web.alerts``)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from monitoring.history.uptime import Uptime, uptimes
from monitoring.kinds import mask_secrets
from monitoring.models import Check
from monitoring.observability.activity import collect_activity, parse_window
from opsconsole.api import BadRequest, api_view


def _percent(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def check_as_json(check: Check, uptime: Uptime | None = None) -> dict:
    """A check as the API shows it; ``uptime_*`` are percent of time not critical (None: no
    data in that window)."""
    data = {
        "name": check.name,
        "kind": check.kind,
        "component": check.component,
        "status": check.status,
        "value": check.last_value,
        "message": check.last_message,
        "last_run_at": check.last_run_at.isoformat() if check.last_run_at else None,
        "enabled": check.enabled,
        "config": mask_secrets(check.config),
        "uptime_24h": _percent(uptime.d1) if uptime else None,
        "uptime_7d": _percent(uptime.d7) if uptime else None,
        "uptime_30d": _percent(uptime.d30) if uptime else None,
    }
    if check.kind_impl.pushed:
        data["ping_url"] = f"{settings.SITE_URL}{check.ping_path()}"
    return data


@api_view()
def checks(request: HttpRequest) -> JsonResponse:
    queryset = Check.objects.order_by("component", "name")
    component = request.GET.get("component")
    if component:
        queryset = queryset.filter(component=component)
    status = request.GET.get("status")
    if status:
        queryset = queryset.filter(status=status)
    found = list(queryset)
    # Two queries for every check's uptime, whatever the number of checks and runs.
    uptime = uptimes([check.pk for check in found])
    return JsonResponse({"checks": [check_as_json(check, uptime.get(check.pk)) for check in found]})


@api_view()
def activity(request: HttpRequest) -> JsonResponse:
    """The delta view as JSON: ``GET /api/activity/?window=30``."""
    try:
        window = parse_window(request.GET.get("window"))
    except ValueError as exc:
        raise BadRequest("invalid window", {"window": str(exc)}) from None
    return JsonResponse(collect_activity(window))
