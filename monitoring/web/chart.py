"""History charts as inline SVG, drawn on the server: no chart library, no script, and every
label goes through ``escape`` so that nothing from a check target reaches the page as markup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from monitoring.models import CheckStatus

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
