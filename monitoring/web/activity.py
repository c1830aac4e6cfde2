"""``/activity/``: the recent events (alerts, status changes, batches, backlog failures) beside
the delta view (what changed in the last window, with a window selector). The numbers come from
``monitoring.observability.activity.collect_activity``, the same as the CLI and API; the events
from ``recent_events``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from monitoring.observability.activity import (
    EVENT_LIMIT,
    EVENT_WINDOW,
    collect_activity,
    labelled_sections,
    recent_events,
)
from opsconsole.page_access import staff_page

# (query value, label, seconds); 30 s is the seeds' default window.
WINDOWS = [
    ("30s", "30 s", 30),
    ("1m", "1 min", 60),
    ("5m", "5 min", 300),
    ("15m", "15 min", 900),
    ("1h", "1 hour", 3600),
    ("6h", "6 hours", 21600),
    ("24h", "24 hours", 86400),
]
DEFAULT_WINDOW = "30s"


@require_GET
@staff_page
def activity_page(request: HttpRequest) -> HttpResponse:
    chosen = request.GET.get("window", DEFAULT_WINDOW)
    seconds = {key: secs for key, _, secs in WINDOWS}.get(chosen)
    if seconds is None:  # an unknown window falls back to the default rather than a 400 page
        chosen, seconds = DEFAULT_WINDOW, 30
    delta = collect_activity(seconds)
    events, failed_sources = recent_events()
    return render(
        request,
        "pages/activity.html",
        {
            "windows": WINDOWS,
            "window": chosen,
            "seconds": seconds,
            "since": parse_datetime(delta["since"]),
            "until": parse_datetime(delta["until"]),
            "sections": labelled_sections(delta["sections"]),
            "events": events,
            "failed_sources": failed_sources,
            "event_hours": int(EVENT_WINDOW.total_seconds() // 3600),
            "event_limit": EVENT_LIMIT,
            "freshness": delta["freshness"],
        },
    )
