"""Template helpers of the staff pages: date-times, ages, durations, numbers, progress bars."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django import template
from django.utils import dateformat, timezone

register = template.Library()


def format_seconds(seconds: float | None) -> str:
    """``95`` -> ``1m 35s``: two units are enough to act on."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


# The one date-time format of the pages (settings.DATETIME_FORMAT says the same for the
# admin): 24-hour, ISO date, the zone named, so that a time read off a phone at 3 am is not
# mistaken for local time.
DATETIME_FORMAT = "Y-m-d H:i T"
DATETIME_SECONDS_FORMAT = "Y-m-d H:i:s T"


@register.filter
def utc(moment: datetime | None, precision: str = "") -> str:
    """``2026-11-25 14:03 UTC``; ``|utc:"seconds"`` adds the seconds (timelines, runs)."""
    if moment is None:
        return "—"
    fmt = DATETIME_SECONDS_FORMAT if precision == "seconds" else DATETIME_FORMAT
    return dateformat.format(timezone.localtime(moment), fmt)


@register.filter
def age(moment: datetime | None) -> str:
    """Time since ``moment``, e.g. ``4m 10s``."""
    if moment is None:
        return "never"
    return format_seconds((timezone.now() - moment).total_seconds())


@register.filter
def seconds(value: float | None) -> str:
    return format_seconds(value)


@register.filter
def number(value: Any) -> str:
    """A measured value without float noise: ``12.345678`` -> ``12.35``."""
    if value is None:
        return "—"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


@register.filter
def uptime(share: float | None) -> str:
    """``99.937`` -> ``99.93 %``: rounded down, so that a check that was down at all never
    reads as 100 %."""
    if share is None:
        return "—"
    # The tolerance keeps float noise (99.9999999999 for a check never down) from reading
    # as 99.99 %; a real outage of a second in 30 days is still 99.99 %.
    hundredths = math.floor(share * 100 + 1e-6)
    if hundredths >= 10_000:
        return "100 %"
    return f"{hundredths / 100:.2f} %"


@register.filter
def percent(part: Any, whole: Any) -> float:
    try:
        return round(100.0 * float(part) / float(whole), 2) if whole else 0.0
    except (TypeError, ValueError):
        return 0.0


@register.inclusion_tag("pages/_progress_bar.html")
def progress_bar(batch: Any, large: bool = False) -> dict[str, Any]:
    """A batch's succeeded and failed shares as two SVG bars: widths are attributes, not inline
    styles, which the Content-Security-Policy refuses."""
    succeeded = percent(batch.succeeded_items, batch.total_items)
    return {
        "succeeded": succeeded,
        "failed": percent(batch.failed_items, batch.total_items),
        "done": batch.succeeded_items + batch.failed_items,
        "total": batch.total_items,
        "large": large,
    }
