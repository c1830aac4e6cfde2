"""Baseline rules: a value that dropped or rose sharply against the check's own recent history.

``{"drop_pct": 50, "rise_pct": 200, "window": 12}``: compare the value with the median of the
check's recent values. The median, not the mean, so one odd run in the window does not move
the baseline. Too little history gives no verdict rather than a guess.

``window`` is either a number of runs (``12``: the last twelve values) or a time span
(``"12h"``: the values of the last twelve hours, at least ``MIN_TIME_WINDOW_VALUES`` of them).
A run-count window covers ``window × interval`` of time; a time window holds about
``window / interval`` values.

Only values that were not themselves in breach make the baseline (``Check.baseline_history``
leaves them out), so while a drop persists the baseline stays where it was before the drop:
a persisting drop stays a drop until the value comes back or an operator resets the baseline.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from opsconsole.env import format_duration, parse_duration

DEFAULT_WINDOW = 12
MAX_WINDOW_RUNS = 1000
# A time window needs a few values before its median means anything.
MIN_TIME_WINDOW_VALUES = 3
# The longest time window: history is read newest first through an index, a week at most.
MAX_WINDOW_SECONDS = 7 * 86400
RULE_KEYS = ("drop_pct", "rise_pct", "window")


@dataclass
class BaselineVerdict:
    status: str  # "ok" or "warning"
    message: str
    baseline: float
    change_pct: float
    window: int  # values the median was taken over

    @property
    def breached(self) -> bool:
        return self.status != "ok"


@dataclass(frozen=True)
class Window:
    """How much history a rule looks at: ``runs`` values, or the values of ``seconds``."""

    runs: int | None = None
    seconds: float | None = None

    def describe(self) -> str:
        if self.seconds is not None:
            return f"last {format_duration(self.seconds)}"
        return f"last {self.runs} values"


def window_of(rule: dict[str, Any]) -> Window:
    """The rule's window (a rule already validated by ``rule_problems``)."""
    raw = rule.get("window", DEFAULT_WINDOW)
    if isinstance(raw, str):
        return Window(seconds=parse_duration(raw))
    return Window(runs=int(raw))


def rule_problems(rule: Any) -> dict[str, str]:
    """What is wrong with a baseline rule, by field ({} when it is valid)."""
    if not isinstance(rule, dict):
        return {"baseline": "must be a mapping such as {drop_pct: 50, window: 12}"}
    problems: dict[str, str] = {}
    for key in rule:
        if key not in RULE_KEYS:
            problems[f"baseline.{key}"] = f"unknown; allowed: {', '.join(RULE_KEYS)}"
    if "drop_pct" not in rule and "rise_pct" not in rule:
        problems["baseline"] = "give drop_pct or rise_pct"
    for key in ("drop_pct", "rise_pct"):
        value = rule.get(key)
        if key in rule and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            problems[f"baseline.{key}"] = "must be a positive number of percent"
    window = rule.get("window", DEFAULT_WINDOW)
    if isinstance(window, str):
        try:
            seconds = parse_duration(window)
        except ValueError as exc:
            problems["baseline.window"] = f"{exc}; a time window has a unit, such as 12h"
        else:
            if window.strip().isdigit():
                problems["baseline.window"] = (
                    "a number of runs is written without quotes (12); a time window has a "
                    "unit (12h)"
                )
            elif not 60 <= seconds <= MAX_WINDOW_SECONDS:
                problems["baseline.window"] = "a time window must be from 1m to 7d"
    elif (
        isinstance(window, bool)
        or not isinstance(window, int)
        or not 2 <= window <= MAX_WINDOW_RUNS
    ):
        problems["baseline.window"] = (
            f"must be a whole number of runs from 2 to {MAX_WINDOW_RUNS}, or a time span "
            "such as 12h"
        )
    return problems


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"


def compare(value: float, history: list[float], rule: dict[str, Any]) -> BaselineVerdict | None:
    """The verdict of ``rule`` for ``value`` against ``history`` (the window's values, newest
    first); None without enough history."""
    window = window_of(rule)
    needed = window.runs if window.runs is not None else MIN_TIME_WINDOW_VALUES
    if len(history) < needed:
        return None
    values = history[: window.runs] if window.runs is not None else history
    baseline = statistics.median(values)
    if baseline == 0:
        # A percentage of zero means nothing; "from none to some" is a threshold's job.
        return None
    change = (value - baseline) * 100 / abs(baseline)
    drop_pct, rise_pct = rule.get("drop_pct"), rule.get("rise_pct")
    over = f"median of the {window.describe()}"
    if drop_pct is not None and -change > float(drop_pct):
        return BaselineVerdict(
            "warning",
            f"dropped {-change:.0f} % vs baseline {_figure(baseline)} "
            f"(more than drop_pct {float(drop_pct):g} %, {over})",
            baseline,
            change,
            len(values),
        )
    if rise_pct is not None and change > float(rise_pct):
        return BaselineVerdict(
            "warning",
            f"rose {change:.0f} % vs baseline {_figure(baseline)} "
            f"(more than rise_pct {float(rise_pct):g} %, {over})",
            baseline,
            change,
            len(values),
        )
    return BaselineVerdict(
        "ok", f"{change:+.0f} % vs baseline {_figure(baseline)}", baseline, change, len(values)
    )
