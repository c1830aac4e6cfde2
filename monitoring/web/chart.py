"""History charts as inline SVG, drawn on the server: no chart library, no script, and every
label goes through ``escape`` so that nothing from a check target reaches the page as markup.

``check_chart(check, range_key)`` is the check page's chart: the value axis fits the data
(a threshold outside it is marked at the edge, not allowed to squash the series), each
bucket shows min / mean / max, failed runs and status changes are marked on the time axis,
and the SVG carries a title and a summary for screen readers. 1 h and 24 h read the raw runs
(at most a day of one check's runs); 7 d and 30 d read the hourly rollups, so a 30-day chart
costs the same at a thousand runs or a million.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from monitoring.history.rollups import floor_time
from monitoring.history.rows import as_datetime, raw_rows
from monitoring.kinds import ConfigError
from monitoring.models import Check, CheckRun, CheckStatus, worst
from monitoring.models.history import CheckRollup, RollupPeriod

CHART_RANGES = ("1h", "24h", "7d", "30d")
DEFAULT_RANGE = "24h"
# At most this many status-change marks (the newest): a flapping check would otherwise
# bury the chart in marks; the summary still counts them all.
MAX_CHANGE_MARKS = 200


@dataclass(frozen=True)
class ChartRange:
    span: timedelta
    step: timedelta  # one bucket: min / mean / max of the runs inside
    from_rollups: bool
    words: str
    tick: timedelta
    tick_format: str


RANGES = {
    "1h": ChartRange(
        timedelta(hours=1),
        timedelta(minutes=1),
        False,
        "the last hour",
        timedelta(minutes=10),
        "%H:%M",
    ),
    "24h": ChartRange(
        timedelta(hours=24),
        timedelta(minutes=10),
        False,
        "the last 24 hours",
        timedelta(hours=4),
        "%H:%M",
    ),
    "7d": ChartRange(
        timedelta(days=7), timedelta(hours=1), True, "the last 7 days", timedelta(days=1), "%d %b"
    ),
    "30d": ChartRange(
        timedelta(days=30), timedelta(hours=4), True, "the last 30 days", timedelta(days=5), "%d %b"
    ),
}


STATUS_FILL = {
    CheckStatus.OK: "#dafbe1",
    CheckStatus.WARNING: "#fff8c5",
    CheckStatus.CRITICAL: "#ffebe9",
    CheckStatus.UNKNOWN: "#eaeef2",
    CheckStatus.PAUSED: "#eaeef2",
}
LINE = {"value": "#0969da", "duration_ms": "#8250df"}

WIDTH, PANEL_HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 800, 160, 56, 12, 18, 22


@dataclass(frozen=True)
class Point:
    at: datetime
    status: str
    value: float | None
    duration_ms: float | None


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _panel(
    points: Sequence[Point],
    attr: str,
    title: str,
    unit: str,
    top: float,
    thresholds: Sequence[tuple[str, float, str]] = (),
) -> list[str]:
    t0, t1 = points[0].at.timestamp(), points[-1].at.timestamp()
    span = (t1 - t0) or 1.0
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = PANEL_HEIGHT - TOP - BOTTOM
    values = [getattr(p, attr) for p in points if getattr(p, attr) is not None]
    limits = [limit for _, limit, _ in thresholds]
    low = min(values + limits, default=0.0)
    high = max(values + limits, default=1.0)
    low = min(low, 0.0)
    if high == low:
        high = low + 1.0
    high += (high - low) * 0.05

    def x(p: Point) -> float:
        return LEFT + (p.at.timestamp() - t0) / span * plot_w

    def y(v: float) -> float:
        return top + TOP + plot_h - (v - low) / (high - low) * plot_h

    out = [f'<text x="{LEFT}" y="{top + 12}" class="title">{escape(title)}</text>']
    # Status bands: one rectangle per stretch of runs with the same status.
    start = 0
    for i in range(1, len(points) + 1):
        if i == len(points) or points[i].status != points[start].status:
            x0 = x(points[start])
            x1 = x(points[i]) if i < len(points) else LEFT + plot_w
            fill = STATUS_FILL.get(points[start].status, "#eaeef2")
            out.append(
                f'<rect x="{x0:.1f}" y="{top + TOP}" width="{max(x1 - x0, 1):.1f}"'
                f' height="{plot_h}" fill="{fill}">'
                f"<title>{escape(points[start].status)}</title></rect>"
            )
            start = i
    out.append(
        f'<rect x="{LEFT}" y="{top + TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>'
    )
    for name, limit, colour in thresholds:
        ly = y(limit)
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{colour}"'
            f' stroke-dasharray="6 4" class="threshold {escape(name)}"/>'
            f'<text x="{LEFT + plot_w - 4}" y="{ly - 3:.1f}" text-anchor="end" fill="{colour}">'
            f"{escape(name)} {_fmt(limit)}{escape(unit)}</text>"
        )
    # Gaps (runs without a value) break the line instead of joining across them.
    segments: list[list[str]] = [[]]
    for p in points:
        v = getattr(p, attr)
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{x(p):.1f},{y(v):.1f}")
    for segment in segments:
        if len(segment) == 1:
            cx, cy = segment[0].split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{LINE[attr]}"/>')
        elif segment:
            out.append(
                f'<polyline points="{" ".join(segment)}" fill="none" stroke="{LINE[attr]}"'
                f' stroke-width="1.5" class="series {attr}"/>'
            )
    out.append(f'<text x="{LEFT - 4}" y="{top + TOP + 4}" text-anchor="end">{_fmt(high)}</text>')
    out.append(
        f'<text x="{LEFT - 4}" y="{top + TOP + plot_h}" text-anchor="end">{_fmt(low)}</text>'
    )
    out.append(f'<text x="{LEFT}" y="{top + PANEL_HEIGHT - 6}">{points[0].at:%m-%d %H:%M}</text>')
    out.append(
        f'<text x="{LEFT + plot_w}" y="{top + PANEL_HEIGHT - 6}" text-anchor="end">'
        f"{points[-1].at:%m-%d %H:%M} UTC</text>"
    )
    return out


def history_chart(
    points: Sequence[Point],
    *,
    warn: float | None,
    crit: float | None,
    unit: str = "",
) -> SafeString:
    """Value and duration of the given runs (oldest first), thresholds as dashed lines and the
    run statuses as background bands."""
    if not points:
        return mark_safe('<p class="muted">No runs yet.</p>')
    thresholds = []
    if warn is not None:
        thresholds.append(("warn", warn, "#9a6700"))
    if crit is not None:
        thresholds.append(("crit", crit, "#cf222e"))
    height = PANEL_HEIGHT * 2
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="History of value and duration, {len(points)} runs" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="system-ui, sans-serif">',
        # .title and .frame are styled by console.css: the CSP allows no inline <style>.
    ]
    parts += _panel(points, "value", f"Value ({unit})" if unit else "Value", unit, 0, thresholds)
    parts += _panel(points, "duration_ms", "Duration (ms)", "ms", PANEL_HEIGHT)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


# --- check_chart: ranges, downsampling, axes that fit the data --------------------------------


@dataclass
class Bucket:
    start: datetime
    runs: int = 0
    failed: int = 0
    worst: str = ""
    values: int = 0
    value_sum: float = 0.0
    value_min: float | None = None
    value_max: float | None = None
    duration_sum: float = 0.0
    duration_max: float | None = None

    @property
    def value_mean(self) -> float | None:
        return self.value_sum / self.values if self.values else None

    @property
    def duration_mean(self) -> float | None:
        return self.duration_sum / self.runs if self.runs else None

    def add_value(self, count: int, total: float, low: float | None, high: float | None) -> None:
        if not count:
            return
        self.values += count
        self.value_sum += total
        self.value_min = low if self.value_min is None else min(self.value_min, low)
        self.value_max = high if self.value_max is None else max(self.value_max, high)

    def add_runs(self, runs: int, failed: int, status: str, dsum: float, dmax: float) -> None:
        self.runs += runs
        self.failed += failed
        self.worst = worst(self.worst or None, status) if runs else self.worst
        self.duration_sum += dsum
        self.duration_max = dmax if self.duration_max is None else max(self.duration_max, dmax)


@dataclass(frozen=True)
class Change:
    at: datetime
    status: str


def format_number(value: float, decimals: int) -> str:
    """Thousands separators and a fixed number of decimals: 5,000 / 162.5 / 0.25."""
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def format_value(value: float, unit: str, decimals: int) -> str:
    return f"{format_number(value, decimals)}{unit}"


def nice_axis(low: float, high: float, ticks: int = 4) -> tuple[float, float, float, int]:
    """(axis low, axis high, tick step, decimals) around the data, on round numbers."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = 10 * magnitude
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * magnitude >= raw * (1 - 1e-9):
            step = multiple * magnitude
            break
    axis_low = math.floor(low / step + 1e-9) * step
    axis_high = math.ceil(high / step - 1e-9) * step
    if axis_high <= axis_low:
        axis_high = axis_low + step
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step / 10 ** math.floor(math.log10(step) + 1e-9), 6) == 2.5:
        decimals += 1
    return axis_low, axis_high, step, decimals


def _unit_and_thresholds(check: Check) -> tuple[str, float | None, float | None]:
    try:
        warn, crit, _ = check.thresholds()
        unit = check.kind_impl.unit_for(check.config)
    except ConfigError:  # a check of a kind no longer installed still shows its history
        warn, crit, unit = check.warn, check.crit, ""
    return unit, warn, crit


def _raw_buckets(
    check: Check, first: datetime, step: timedelta, count: int, until: datetime
) -> tuple[list[Bucket], list[Change]]:
    buckets = [Bucket(first + step * i) for i in range(count)]
    changes = []
    # Served by checkrun_check_latest_idx: one check's runs in a time range.
    rows = CheckRun.objects.filter(
        check_obj_id=check.pk, created_at__gte=first, created_at__lte=until
    ).values_list("created_at", "status", "value", "duration_ms", "status_changed")
    step_s = step.total_seconds()
    for raw_at, status, value, duration, changed in raw_rows(rows.order_by()):
        at = as_datetime(raw_at)
        index = min(int((at - first).total_seconds() // step_s), count - 1)
        bucket = buckets[index]
        failed = status not in (CheckStatus.OK, CheckStatus.PAUSED)
        bucket.add_runs(1, int(failed), status, duration or 0.0, duration or 0.0)
        if value is not None and math.isfinite(value):
            bucket.add_value(1, value, value, value)
        if changed:
            changes.append(Change(at, status))
    changes.sort(key=lambda c: c.at)
    return buckets, changes


def _rollup_buckets(
    check: Check, first: datetime, step: timedelta, count: int, until: datetime
) -> tuple[list[Bucket], list[Change]]:
    buckets = [Bucket(first + step * i) for i in range(count)]
    step_s = step.total_seconds()
    for row in CheckRollup.objects.filter(
        check_obj_id=check.pk, period=RollupPeriod.HOUR, bucket__gte=first, bucket__lte=until
    ).order_by():
        index = min(int((row.bucket - first).total_seconds() // step_s), count - 1)
        bucket = buckets[index]
        bucket.add_runs(
            row.run_count,
            row.failed_count,
            row.worst_status,
            row.duration_sum_ms,
            row.duration_max_ms,
        )
        bucket.add_value(row.value_count, row.value_sum, row.value_min, row.value_max)
    # Served by checkrun_changes_idx (partial: status changes only).
    changes = [
        Change(at, status)
        for at, status in CheckRun.objects.filter(
            check_obj_id=check.pk, status_changed=True, created_at__gte=first, created_at__lte=until
        )
        .order_by("created_at", "id")
        .values_list("created_at", "status")
    ]
    return buckets, changes


@dataclass(frozen=True)
class _Frame:
    """Where one panel's plot sits, and the time span it shows."""

    top: float
    height: float
    t0: datetime
    t1: datetime

    def x(self, at: datetime) -> float:
        span = (self.t1 - self.t0).total_seconds() or 1.0
        return C_LEFT + (at - self.t0).total_seconds() / span * (C_WIDTH - C_LEFT - RIGHT)


C_WIDTH, C_LEFT = WIDTH, 72
VALUE_PANEL, DURATION_PANEL = 210, 150
STATUS_WORDS = {s.value: s.label.lower() for s in CheckStatus}


def _series(
    frame: _Frame,
    buckets: Sequence[Bucket],
    step: timedelta,
    low_of,
    mean_of,
    high_of,
    y,
    css: str,
    colour: str,
) -> list[str]:
    """A min-max band and a mean line; an empty bucket breaks both."""
    out: list[str] = []
    segments: list[list[Bucket]] = [[]]
    for bucket in buckets:
        if mean_of(bucket) is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(bucket)
    half = step / 2
    for segment in segments:
        if not segment:
            continue
        xs = [frame.x(b.start + half) for b in segment]
        if len(segment) == 1:
            out.append(
                f'<circle cx="{xs[0]:.1f}" cy="{y(mean_of(segment[0])):.1f}" r="2.5"'
                f' fill="{colour}" class="series {css}"/>'
            )
            continue
        upper = [f"{x:.1f},{y(high_of(b)):.1f}" for x, b in zip(xs, segment, strict=True)]
        lower = [f"{x:.1f},{y(low_of(b)):.1f}" for x, b in zip(xs, segment, strict=True)]
        out.append(
            f'<polygon points="{" ".join(upper + lower[::-1])}" fill="{colour}"'
            f' fill-opacity="0.18" stroke="none" class="band {css}"/>'
        )
        mean = [f"{x:.1f},{y(mean_of(b)):.1f}" for x, b in zip(xs, segment, strict=True)]
        out.append(
            f'<polyline points="{" ".join(mean)}" fill="none" stroke="{colour}"'
            f' stroke-width="1.5" class="series {css}"/>'
        )
    return out


def _time_axis(frame: _Frame, rng: ChartRange, y: float) -> list[str]:
    out = []
    tick = rng.tick
    at = floor_time(frame.t0, tick)
    if at < frame.t0:
        at += tick
    while at <= frame.t1:
        x = frame.x(at)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top:.1f}" y2="{frame.top + frame.height:.1f}"'
            f' class="grid" stroke="#d0d7de" stroke-width="0.5"/>'
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" class="tick">'
            f"{at.strftime(rng.tick_format)}</text>"
        )
        at += tick
    return out


def _value_axis(
    frame: _Frame, low: float, high: float, step: float, decimals: int, unit: str, y
) -> list[str]:
    out = []
    count = round((high - low) / step)
    for i in range(count + 1):
        value = low + i * step
        ly = y(value)
        out.append(
            f'<line x1="{C_LEFT}" x2="{C_WIDTH - RIGHT}" y1="{ly:.1f}" y2="{ly:.1f}" class="grid"'
            f' stroke="#d0d7de" stroke-width="0.5"/>'
            f'<text x="{C_LEFT - 6}" y="{ly + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(format_value(value, unit, decimals))}</text>"
        )
    return out


def _status_bands(frame: _Frame, buckets: Sequence[Bucket], step: timedelta) -> list[str]:
    out = []
    start = 0
    for i in range(1, len(buckets) + 1):
        if i == len(buckets) or buckets[i].worst != buckets[start].worst:
            status = buckets[start].worst
            if status:
                x0, x1 = frame.x(buckets[start].start), frame.x(buckets[i - 1].start + step)
                out.append(
                    f'<rect x="{x0:.1f}" y="{frame.top:.1f}" width="{max(x1 - x0, 0.5):.1f}"'
                    f' height="{frame.height:.1f}" fill="{STATUS_FILL.get(status, "#eaeef2")}"'
                    f' class="status-band status-{escape(status)}"/>'
                )
            start = i
    return out


def _marks(
    frame: _Frame, buckets: Sequence[Bucket], step: timedelta, changes: Sequence[Change]
) -> list[str]:
    """Failed runs (a red tick per bucket that had any) and status changes (a triangle)
    just under the plot, each with its hover text."""
    out = []
    base = frame.top + frame.height
    for bucket in buckets:
        if bucket.failed:
            x0, x1 = frame.x(bucket.start), frame.x(bucket.start + step)
            text = (
                f"{bucket.failed} of {bucket.runs} runs failed, "
                f"{bucket.start:%Y-%m-%d %H:%M}–{bucket.start + step:%H:%M} UTC"
            )
            out.append(
                f'<rect x="{x0:.1f}" y="{base + 2:.1f}" width="{max(x1 - x0, 1.5):.1f}" height="5"'
                f' fill="#cf222e" class="mark failed"><title>{escape(text)}</title></rect>'
            )
    for change in changes[-MAX_CHANGE_MARKS:]:
        x = frame.x(change.at)
        colour = {
            CheckStatus.CRITICAL: "#cf222e",
            CheckStatus.WARNING: "#9a6700",
            CheckStatus.OK: "#1a7f37",
        }.get(change.status, "#57606a")
        text = f"{change.at:%Y-%m-%d %H:%M} UTC: became {STATUS_WORDS.get(change.status, change.status)}"
        out.append(
            f'<path d="M{x:.1f},{base + 8:.1f} l-4,7 h8 z" fill="{colour}"'
            f' class="mark change change-{escape(change.status)}"><title>{escape(text)}</title></path>'
        )
    return out


def _panel_of(
    frame: _Frame,
    title: str,
    rng: ChartRange,
    buckets: Sequence[Bucket],
    changes: Sequence[Change],
    unit: str,
    low_of,
    mean_of,
    high_of,
    css: str,
    colour: str,
    thresholds: Sequence[tuple[str, float, str]] = (),
    marks: bool = True,
) -> tuple[list[str], str]:
    """One panel's SVG and its sentence for the summary; ``marks``: failed runs and status
    changes under its plot (the value panel's, once per chart)."""
    out = [f'<text x="{C_LEFT}" y="{frame.top - 8:.1f}" class="title">{escape(title)}</text>']
    out += _status_bands(frame, buckets, rng.step)
    lows = [low_of(b) for b in buckets if mean_of(b) is not None]
    highs = [high_of(b) for b in buckets if mean_of(b) is not None]
    if not lows:
        out.append(
            f'<rect x="{C_LEFT}" y="{frame.top:.1f}" width="{C_WIDTH - C_LEFT - RIGHT}"'
            f' height="{frame.height:.1f}" class="frame plot" fill="none" stroke="#d0d7de"/>'
            f'<text x="{(C_LEFT + C_WIDTH - RIGHT) / 2:.1f}" y="{frame.top + frame.height / 2:.1f}"'
            f' text-anchor="middle" class="empty">No values in {escape(rng.words)}</text>'
        )
        if marks:
            out += _marks(frame, buckets, rng.step, changes)
        return out, f"{title}: no values."
    data_low, data_high = min(lows), max(highs)
    low, high, step, decimals = nice_axis(data_low, data_high)

    def y(value: float) -> float:
        return frame.top + frame.height - (value - low) / (high - low) * frame.height

    out += _value_axis(frame, low, high, step, decimals, unit, y)
    out.append(
        f'<rect x="{C_LEFT}" y="{frame.top:.1f}" width="{C_WIDTH - C_LEFT - RIGHT}"'
        f' height="{frame.height:.1f}" class="frame plot" fill="none" stroke="#8c959f"/>'
    )
    out += _series(frame, buckets, rng.step, low_of, mean_of, high_of, y, css, colour)
    threshold_words = []
    edge_labels = {True: 0, False: 0}  # off-chart labels so far at the top / bottom edge
    for name, limit, tcolour in thresholds:
        text = f"{name} {format_value(limit, unit, decimals)}"
        if low <= limit <= high:
            ly = y(limit)
            out.append(
                f'<line x1="{C_LEFT}" x2="{C_WIDTH - RIGHT}" y1="{ly:.1f}" y2="{ly:.1f}"'
                f' stroke="{tcolour}" stroke-dasharray="6 4" class="threshold {escape(name)}"/>'
                f'<text x="{C_WIDTH - RIGHT - 4}" y="{ly - 3:.1f}" text-anchor="end"'
                f' fill="{tcolour}" class="threshold-label">{escape(text)}</text>'
            )
            threshold_words.append(f"{text} drawn")
        else:
            above = limit > high
            # Stacked, so that warn and crit both off the same edge stay readable.
            shift = 12 * edge_labels[above]
            edge_labels[above] += 1
            ly = frame.top + 11 + shift if above else frame.top + frame.height - 4 - shift
            arrow = "↑" if above else "↓"
            out.append(
                f'<text x="{C_WIDTH - RIGHT - 4}" y="{ly:.1f}" text-anchor="end" fill="{tcolour}"'
                f' class="threshold-label off-chart {escape(name)}">{escape(text)} {arrow}</text>'
            )
            threshold_words.append(f"{text} {'above' if above else 'below'} the chart")
    if marks:
        out += _marks(frame, buckets, rng.step, changes)
    mean_total = [(mean_of(b), b) for b in buckets if mean_of(b) is not None]
    mean = sum(m for m, _ in mean_total) / len(mean_total)
    sentence = (
        f"{title}: min {format_value(data_low, unit, decimals)}, "
        f"mean {format_value(mean, unit, decimals)}, max {format_value(data_high, unit, decimals)}"
    )
    if threshold_words:
        sentence += "; " + ", ".join(threshold_words)
    return out, sentence + "."


def check_chart(
    check: Check, range_key: str = DEFAULT_RANGE, now: datetime | None = None
) -> SafeString:
    """The check page's chart over ``range_key`` (one of ``CHART_RANGES``; anything else is
    the default, 24 h): value and duration, min / mean / max per bucket."""
    now = now or timezone.now()
    rng = RANGES.get(range_key) or RANGES[DEFAULT_RANGE]
    range_key = range_key if range_key in RANGES else DEFAULT_RANGE
    count = int(rng.span / rng.step)
    last = floor_time(now, rng.step)
    first = last - rng.step * (count - 1)
    load = _rollup_buckets if rng.from_rollups else _raw_buckets
    buckets, changes = load(check, first, rng.step, count, now)
    runs = sum(b.runs for b in buckets)
    if not runs and not changes:
        return mark_safe(f'<p class="muted">No runs in {escape(rng.words)}.</p>')  # noqa: S308 - escaped
    unit, warn, crit = _unit_and_thresholds(check)
    thresholds = []
    if warn is not None:
        thresholds.append(("warn", warn, "#9a6700"))
    if crit is not None:
        thresholds.append(("crit", crit, "#cf222e"))
    t0, t1 = first, last + rng.step
    value_frame = _Frame(28, VALUE_PANEL - 28 - 40, t0, t1)
    duration_frame = _Frame(VALUE_PANEL + 28, DURATION_PANEL - 28 - 40, t0, t1)
    unit_words = unit.strip()
    value_svg, value_text = _panel_of(
        value_frame,
        f"Value ({unit_words})" if unit_words else "Value",
        rng,
        buckets,
        changes,
        unit,
        lambda b: b.value_min,
        lambda b: b.value_mean,
        lambda b: b.value_max,
        "value",
        LINE["value"],
        thresholds,
    )
    duration_svg, duration_text = _panel_of(
        duration_frame,
        "Duration (ms)",
        rng,
        buckets,
        [],
        " ms",
        lambda b: b.duration_mean if b.duration_mean is not None else 0.0,
        lambda b: b.duration_mean,
        lambda b: b.duration_max if b.duration_max is not None else b.duration_mean,
        "duration",
        LINE["duration_ms"],
        marks=False,
    )
    failed = sum(b.failed for b in buckets)
    title = f"{check.name}: value and duration over {rng.words} (UTC)"
    change_words = ", ".join(
        f"{STATUS_WORDS.get(c.status, c.status)} at {c.at:%Y-%m-%d %H:%M}" for c in changes[-5:]
    )
    summary = (
        f"{runs:,} runs in {count} buckets of {_duration_words(rng.step)} (min, mean and max "
        f"each). {value_text} {duration_text} {failed:,} failed "
        f"{'run' if failed == 1 else 'runs'}. {len(changes)} status "
        f"{'change' if len(changes) == 1 else 'changes'}"
        + (f", the latest: {change_words}." if changes else ".")
    )
    ident = f"chart-{check.pk}-{range_key}"
    height = VALUE_PANEL + DURATION_PANEL
    parts = [
        f'<svg class="chart" viewBox="0 0 {C_WIDTH} {height}" role="img"'
        f' aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg"'
        f' font-size="11" font-family="system-ui, sans-serif">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(summary)}</desc>'
    ]
    parts += value_svg
    parts += _time_axis(value_frame, rng, value_frame.top + value_frame.height + 28)
    parts += duration_svg
    parts += _time_axis(duration_frame, rng, duration_frame.top + duration_frame.height + 28)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


def _duration_words(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h"


__all__ = [
    "CHART_RANGES",
    "RANGES",
    "Point",
    "check_chart",
    "format_value",
    "history_chart",
    "nice_axis",
]
