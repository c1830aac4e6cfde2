"""The status strip: a check's last 24 hours as one cell per hour, coloured by the worst run
status of the hour, read from the hourly rollups (one query for any number of checks).

Two drawings: ``render_strip`` (one rect per hour with its own hover text, for the check page)
and ``compact_strip`` (one path per status with the hours it covers as hover text, about a
quarter of the bytes, for pages that list hundreds of checks and are refetched every 15 s).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from monitoring.history.rollups import HOUR, SlotOf, floor_time
from monitoring.history.rows import raw_rows
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


def _hour_rows(ids: list[int], now: datetime) -> tuple[list[datetime], list[tuple]]:
    """The starts of the 24 cells and the hourly rollups in them: (check id, cell index,
    worst status, runs, failed)."""
    first = floor_time(now, CELL) - CELL * (CELLS - 1)
    starts = [first + CELL * i for i in range(CELLS)]
    if not ids:
        return starts, []
    # The hour comes back as its cell's index (a CASE in SQL): no timestamp to convert per row,
    # and the rows are read raw (no per-value converters: thousands of rows for a dashboard).
    if connection.vendor == "postgresql":
        # One array parameter: 500 placeholders make a statement psycopg parses anew each time.
        # Cast to the column's type: psycopg sends small ids as smallint[], which PostgreSQL
        # then compares per row by a cross-type operator (twice the time of the whole read).
        table = CheckRollup._meta.db_table
        of_ids = RawSQL(
            f'"{table}"."check_id" = ANY(%s::bigint[])', [ids], output_field=BooleanField()
        )
    else:
        of_ids = Q(check_obj_id__in=ids)
    rows = raw_rows(
        CheckRollup.objects.filter(
            of_ids, period=RollupPeriod.HOUR, bucket__gte=first, bucket__lte=now
        )
        .order_by()
        .annotate(cell=SlotOf("bucket", starts, CELL))
        .values_list("check_obj_id", "cell", "worst_status", "run_count", "failed_count")
    )
    return starts, rows


def status_strips(
    checks: Iterable[Check | int], now: datetime | None = None
) -> dict[int, list[StripCell]]:
    """The last 24 hours of each check (checks or ids), oldest cell first, keyed by check id.
    The last cell is the current hour, so far."""
    now = now or timezone.now()
    ids = _ids(checks)
    starts, rows = _hour_rows(ids, now)
    # One empty cell per hour, shared by every check that had no runs in it.
    empty = [StripCell(start, start + CELL, "") for start in starts]
    strips = {check_id: list(empty) for check_id in ids}
    for check_id, cell, worst, runs, failed in rows:
        if runs:
            start = starts[cell]
            strips[check_id][cell] = StripCell(start, start + CELL, worst, runs, failed)
    return strips


def _summary(cells: Sequence[StripCell]) -> str:
    return _status_summary([cell.status for cell in cells])


def _status_summary(statuses: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status or "no data"] = counts.get(status or "no data", 0) + 1
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


# --- the compact drawing ---------------------------------------------------------------------

# One hour of a strip as the compact drawing reads it: (worst status or "", runs, failed).
Hour = tuple[str, int, int]
NO_RUNS: Hour = ("", 0, 0)
# Worst first: the hover text a reader looks for is drawn (and read) first.
_ORDER = {"critical": 0, "warning": 1, "unknown": 2, "paused": 3, "ok": 4, "": 5}


@lru_cache(maxsize=32)
def _cell_paths(count: int, width: int, height: int) -> tuple[tuple[str, ...], int]:
    """Each cell as a closed subpath on whole units (a 1-unit gap between cells), and the
    drawing's width: "M20 0h9v16h-9z" is a third of a rect element."""
    step = max(2, (width + 1) // count)
    cell_w = step - 1
    paths = tuple(f"M{i * step} 0h{cell_w}v{height}h-{cell_w}z" for i in range(count))
    return paths, count * step - 1


@lru_cache(maxsize=256)
def _clock(at: datetime) -> str:
    # Every strip of a page has the same 25 hour boundaries: formatted once each.
    return f"{at:%H:%M}"


def _hour_ranges(first: datetime, count: int, places: list[int]) -> str:
    """ "02:00–05:00, 09:00–10:00 UTC" for the cells at ``places`` (ascending) of a strip whose
    first cell starts at ``first``, contiguous hours joined; "all 24 hours" for every cell."""
    if len(places) == count:
        return f"all {count} hours"
    spans: list[list[int]] = []
    for place in places:
        if spans and spans[-1][1] == place - 1:
            spans[-1][1] = place
        else:
            spans.append([place, place])
    text = ", ".join(
        f"{_clock(first + CELL * a)}–{_clock(first + CELL * (b + 1))}" for a, b in spans
    )
    return f"{text} UTC"


def _group_label(status: str, hours: Sequence[Hour], places: list[int], first: datetime) -> str:
    """Hover text of one status's cells, e.g. "critical, 1 hour (14:00–15:00 UTC): 3 of 60
    runs failed"."""
    count = f"{len(places)} {'hour' if len(places) == 1 else 'hours'}"
    where = _hour_ranges(first, len(hours), places)
    if not status:
        return f"no runs, {count} ({where})"
    runs = sum(hours[i][1] for i in places)
    failed = sum(hours[i][2] for i in places)
    counted = f"{runs:,} {'run' if runs == 1 else 'runs'}"
    outcome = f"{failed:,} of {counted} failed" if failed else f"{counted}, none failed"
    return f"{status}, {count} ({where}): {outcome}"


@lru_cache(maxsize=4096)
def _compact_svg(first: datetime, hours: tuple[Hour, ...], width: int, height: int) -> SafeString:
    """Cached: a page draws each distinct strip once (healthy checks of one interval look
    alike), and the next refresh in the same hour finds most of them drawn."""
    paths, view_width = _cell_paths(len(hours), width, height)
    places: dict[str, list[int]] = {}
    for place, (status, _, _) in enumerate(hours):
        places.setdefault(status, []).append(place)
    summary = html.escape(_status_summary(status for status, _, _ in hours), quote=True)
    parts = [
        f'<svg class="strip" viewBox="0 0 {view_width} {height}" width="{width}"'
        f' height="{height}" role="img" aria-label="{summary}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{summary}</title>'
    ]
    for status in sorted(places, key=lambda s: _ORDER.get(s, 0)):
        at = places[status]
        label = html.escape(_group_label(status, hours, at, first), quote=True)
        parts.append(
            f'<path class="strip-cell strip-{_STATUS_CLASS.get(status, "none")}"'
            f' fill="{FILL.get(status, FILL[""])}" d="{"".join(paths[i] for i in at)}">'
            f"<title>{label}</title></path>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


def compact_strip(cells: Sequence[StripCell], *, width: int = 240, height: int = 16) -> SafeString:
    """The strip as inline SVG for lists: one ``<path>`` per status present, its ``<title>``
    naming the hours it covers and their runs, a summary for screen readers, no script and
    no style attribute (the CSP forbids both). About 1 KB where ``render_strip`` draws 4.6."""
    if not cells:
        return mark_safe("")
    hours = tuple((c.status, c.runs, c.failed) if c.runs else NO_RUNS for c in cells)
    return _compact_svg(cells[0].start, hours, width, height)


def compact_strips(
    checks: Iterable[Check | int], now: datetime | None = None, *, width: int = 240
) -> dict[int, SafeString]:
    """``compact_strip`` of the last 24 hours of each check (checks or ids), keyed by check
    id, drawn straight from the rollup rows (one query) without a cell object per hour."""
    now = now or timezone.now()
    ids = _ids(checks)
    starts, rows = _hour_rows(ids, now)
    hours: dict[int, list[Hour]] = {check_id: [NO_RUNS] * CELLS for check_id in ids}
    for check_id, cell, worst, runs, failed in rows:
        if runs:
            hours[check_id][cell] = (worst, runs, failed)
    first = starts[0]
    return {
        check_id: _compact_svg(first, tuple(strip), width, 16) for check_id, strip in hours.items()
    }
