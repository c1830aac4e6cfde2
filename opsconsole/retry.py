"""Retry timing shared by notifications, backlog entries and batch items."""

from __future__ import annotations


def backoff_seconds(attempt: int, base: float, cap: float | None = None) -> float:
    """Delay after the n-th failed attempt (1-based): base, 2×base, 4×base, … up to ``cap``."""
    delay = base * 2 ** max(attempt - 1, 0)
    return delay if cap is None else min(delay, cap)
