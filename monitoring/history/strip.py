"""The status strip: a check's last 24 hours as one cell per hour, coloured by the worst run
status of the hour, read from the hourly rollups (one query for any number of checks)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from monitoring.history.rollups import HOUR, floor_time, slot_of
from monitoring.models import Check, CheckStatus
from monitoring.models.history import CheckRollup, RollupPeriod

CELLS = 24
CELL = HOUR
# Default fills; the classes (strip-ok, strip-warning, ...) let the stylesheet re-theme them
# (CSS beats SVG presentation attributes, and the CSP allows no inline style).
FILL = {
    CheckStatus.OK: "#2da44e",
    CheckStatus.WARNING: "#d4a72c",
    CheckStatus.CRITICAL: "#cf222e",
    CheckStatus.UNKNOWN: "#8c959f",
    CheckStatus.PAUSED: "#8c959f",
    "": "#d0d7de",
}


@lru_cache(maxsize=256)
def _hours(start: datetime, end: datetime) -> str:
    # Every check's strip has the same 24 hours: formatted once, not once per cell.
    return f"{start:%H:%M}–{end:%H:%M} UTC"


@dataclass(frozen=True)
class StripCell:
    start: datetime
    end: datetime
    status: str  # the worst run status, "" when there were no runs
    runs: int = 0
    failed: int = 0

    @property
    def label(self) -> str:
        """Hover text, e.g. "14:00–15:00 UTC: warning, 3 of 60 runs failed"."""
        when = _hours(self.start, self.end)
        if not self.runs:
            return f"{when}: no runs"
        runs = "run" if self.runs == 1 else "runs"
        if not self.failed:
            return f"{when}: {self.status}, {self.runs} {runs}, none failed"
        return f"{when}: {self.status}, {self.failed} of {self.runs} {runs} failed"


def _ids(checks: Iterable[Check | int]) -> list[int]:
    return [c if isinstance(c, int) else c.pk for c in checks]


def status_strips(
    checks: Iterable[Check | int], now: datetime | None = None
) -> dict[int, list[StripCell]]:
    """The last 24 hours of each check (checks or ids), oldest cell first, keyed by check id.
    The last cell is the current hour, so far."""
    now = now or timezone.now()
    ids = _ids(checks)
    first = floor_time(now, CELL) - CELL * (CELLS - 1)
    starts = [first + CELL * i for i in range(CELLS)]
    # One empty cell per hour, shared by every check that had no runs in it.
    empty = [StripCell(start, start + CELL, "") for start in starts]
    strips = {check_id: list(empty) for check_id in ids}
    if not ids:
        return strips
    # The hour comes back as its cell's index (a CASE in SQL): no timestamp to convert per row.
    rows = (
        CheckRollup.objects.filter(
            check_obj_id__in=ids, period=RollupPeriod.HOUR, bucket__gte=first, bucket__lte=now
        )
        .order_by()
        .annotate(cell=slot_of("bucket", starts, CELL))
        .values_list("check_obj_id", "cell", "worst_status", "run_count", "failed_count")
    )
    for check_id, cell, worst, runs, failed in rows:
        if runs:
            start = starts[cell]
            strips[check_id][cell] = StripCell(start, start + CELL, worst, runs, failed)
    return strips


def _summary(cells: Sequence[StripCell]) -> str:
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.status or "no data"] = counts.get(cell.status or "no data", 0) + 1
    order = ["critical", "warning", "unknown", "paused", "ok", "no data"]
    parts = [
        f"{counts[name]} {'hour' if counts[name] == 1 else 'hours'} {name}"
        for name in order
        if counts.get(name)
    ]
    return "Status over the last 24 hours: " + ", ".join(parts)


@lru_cache(maxsize=32)
def _geometry(count: int, width: int) -> tuple[str, ...]:
    """Each cell's x and width attributes, for strips of ``count`` cells."""
    gap = 1
    cell_w = (width - gap * (count - 1)) / count
    return tuple(f'x="{i * (cell_w + gap):.2f}" width="{cell_w:.2f}"' for i in range(count))


def render_strip(cells: Sequence[StripCell], *, width: int = 240, height: int = 16) -> SafeString:
    """The strip as inline SVG: one rect per cell with its hover text as ``<title>``, a
    summary for screen readers, no script and no style attribute (the CSP forbids both).

    A dashboard draws hundreds of these: the per-cell work is one f-string; the geometry and
    the hours are computed once per page."""
    if not cells:
        return mark_safe("")
    summary = escape(_summary(cells))
    geometry = _geometry(len(cells), width)
    parts = [
        f'<svg class="strip" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{summary}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{summary}</title>"
    ]
    parts += [_cell_svg(place, cell, height) for place, cell in zip(geometry, cells, strict=True)]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


_STATUS_CLASS = {status.value: status.value for status in CheckStatus}


@lru_cache(maxsize=4096)
def _cell_svg(place: str, cell: StripCell, height: int) -> str:
    """One cell's rect; cached, since most checks' hours look alike (ok, 60 runs)."""
    status = _STATUS_CLASS.get(cell.status, "none")
    return (
        f'<rect class="strip-cell strip-{status}" {place} y="0" height="{height}" rx="1.5"'
        f' fill="{FILL.get(cell.status, FILL[""])}">'
        f"<title>{html.escape(cell.label, quote=True)}</title></rect>"
    )
