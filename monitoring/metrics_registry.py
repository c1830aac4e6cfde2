"""Metric collectors that feed /metrics.

A collector is ``fn(now) -> Iterable[prometheus_client.core.Metric]`` computed from the
database, so what any worker did is visible from every web process. Apps register theirs in
``AppConfig.ready``; the /metrics endpoint serves a snapshot of all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

Collector = Callable[[datetime], Iterable[Any]]

_collectors: dict[str, Collector] = {}


def register_collector(name: str, collector: Collector) -> None:
    _collectors[name] = collector


def collectors() -> dict[str, Collector]:
    return dict(_collectors)
