"""Sources of the delta view: what changed in a time window.

A source is ``fn(since, until) -> dict`` returning one section of the view, e.g.
``{"added": 3, "processed": 10, "failed": 0}``; apps register theirs in ``AppConfig.ready``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

ActivitySource = Callable[[datetime, datetime], dict[str, Any]]

_sources: dict[str, ActivitySource] = {}


def register_activity_source(section: str, source: ActivitySource) -> None:
    _sources[section] = source


def activity_sources() -> dict[str, ActivitySource]:
    return dict(_sources)
