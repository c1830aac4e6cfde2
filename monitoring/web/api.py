"""JSON API for checks and the delta view (alerts have theirs in ``web.alerts``)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from monitoring.kinds import mask_secrets
from monitoring.models import Check
from monitoring.observability.activity import collect_activity, parse_window
from opsconsole.api import BadRequest, api_view


def check_as_json(check: Check) -> dict:
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
    return JsonResponse({"checks": [check_as_json(check) for check in queryset]})


@api_view()
def activity(request: HttpRequest) -> JsonResponse:
    """The delta view as JSON: ``GET /api/activity/?window=30``."""
    try:
        window = parse_window(request.GET.get("window"))
    except ValueError as exc:
        raise BadRequest("invalid window", {"window": str(exc)}) from None
    return JsonResponse(collect_activity(window))
