"""JSON of the delta view: ``GET /api/activity/?window=30``."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from monitoring.activity import collect_activity
from opsconsole.api import BadRequest, api_view
from opsconsole.env import parse_duration

MAX_WINDOW_SECONDS = 7 * 86400


def parse_window(value: str | None, default: float = 30) -> float:
    """A window in seconds from ``30``, ``30s``, ``5m``…; raises ValueError with a reason."""
    if value is None or value == "":
        return default
    try:
        seconds = parse_duration(value.strip())
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if not 1 <= seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"must be between 1s and 7d, got {value!r}")
    return seconds


@api_view()
def activity(request: HttpRequest) -> JsonResponse:
    try:
        window = parse_window(request.GET.get("window"))
    except ValueError as exc:
        raise BadRequest("invalid window", {"window": str(exc)}) from None
    return JsonResponse(collect_activity(window))
