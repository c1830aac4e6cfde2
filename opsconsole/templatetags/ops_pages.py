"""Template helpers of the staff pages: ages, durations, the overall state in the header."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

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
