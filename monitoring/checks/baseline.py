"""Baseline rules: a value that dropped or rose sharply against the check's own recent history.

``{"drop_pct": 50, "rise_pct": 200, "window": 12}``: compare the value with the median of the
check's last ``window`` run values (``Check.baseline_verdict`` reads them). The median, not the mean, so one odd run in the window does
not move the baseline. Too little history gives no verdict rather than a guess.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

DEFAULT_WINDOW = 12


@dataclass
class BaselineVerdict:
    status: str  # "ok" or "warning"
    message: str
    baseline: float
    change_pct: float
    window: int


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"


def compare(value: float, history: list[float], rule: dict[str, Any]) -> BaselineVerdict | None:
    """The verdict of ``rule`` for ``value`` against ``history``; None without enough history."""
    window = int(rule.get("window", DEFAULT_WINDOW))
    if len(history) < window:
        return None
    baseline = statistics.median(history[:window])
    if baseline == 0:
        # A percentage of zero means nothing; "from none to some" is a threshold's job.
        return None
    change = (value - baseline) * 100 / abs(baseline)
    drop_pct, rise_pct = rule.get("drop_pct"), rule.get("rise_pct")
    if drop_pct is not None and -change > float(drop_pct):
        return BaselineVerdict(
            "warning",
            f"dropped {-change:.0f} % vs baseline {_figure(baseline)}",
            baseline,
            change,
            window,
        )
    if rise_pct is not None and change > float(rise_pct):
        return BaselineVerdict(
            "warning",
            f"rose {change:.0f} % vs baseline {_figure(baseline)}",
            baseline,
            change,
            window,
        )
    return BaselineVerdict(
        "ok", f"{change:+.0f} % vs baseline {_figure(baseline)}", baseline, change, window
    )
