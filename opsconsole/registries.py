"""The registries the apps plug into from ``AppConfig.ready``.

- periodic jobs: what ``setup_schedules`` installs in django-q2 (each is also a command for cron);
- metric collectors: ``fn(now) -> Iterable[Metric]`` behind ``/metrics``, computed from the
  database so that what any worker did is visible from every web process;
- activity sources: ``fn(since, until) -> dict``, one section of the delta view each;
- dashboard panels: one section of the dashboard each;
- retention rules: what ``housekeeping`` deletes.

Check kinds have their own registry (``monitoring.kinds``). Registration is by name, so a
module imported twice registers once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    func: str  # dotted path of the task function
    minutes: int
    command: str  # the equivalent management command, for cron
    description: str


Collector = Callable[[datetime], Iterable[Any]]
ActivitySource = Callable[[datetime, datetime], dict[str, Any]]


@dataclass(frozen=True)
class DashboardPanel:
    """A dashboard section: ``context(now)`` gives the template its data; lower ``order`` first."""

    name: str
    template: str
    context: Callable[[datetime], dict[str, Any]]
    order: int = 100


@dataclass(frozen=True)
class RetentionRule:
    """``run(now, deleter, result)`` deletes what is past its keep-by date through the shared
    chunked deleter (``opsconsole.housekeeping``); ``keeps()`` says what, from the settings."""

    name: str
    keeps: Callable[[], str]
    run: Callable[..., Any]


_jobs: dict[str, PeriodicJob] = {}
_collectors: dict[str, Collector] = {}
_activity_sources: dict[str, ActivitySource] = {}
_panels: dict[str, DashboardPanel] = {}
_retention_rules: dict[str, RetentionRule] = {}


def register_job(job: PeriodicJob) -> None:
    _jobs[job.name] = job


def periodic_jobs() -> list[PeriodicJob]:
    return sorted(_jobs.values(), key=lambda job: job.name)


def register_collector(name: str, collector: Collector) -> None:
    _collectors[name] = collector


def unregister_collector(name: str) -> None:
    _collectors.pop(name, None)


def collectors() -> dict[str, Collector]:
    return dict(_collectors)


def register_activity_source(section: str, source: ActivitySource) -> None:
    _activity_sources[section] = source


def activity_sources() -> dict[str, ActivitySource]:
    return dict(_activity_sources)


def register_panel(panel: DashboardPanel) -> None:
    _panels[panel.name] = panel


def dashboard_panels() -> list[DashboardPanel]:
    return sorted(_panels.values(), key=lambda panel: (panel.order, panel.name))


def register_retention_rule(rule: RetentionRule) -> None:
    _retention_rules[rule.name] = rule


def retention_rules() -> list[RetentionRule]:
    return list(_retention_rules.values())
