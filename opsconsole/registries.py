"""The registries the apps plug into from ``AppConfig.ready``.

- periodic jobs: what ``setup_schedules`` installs in django-q2 (each is also a command for cron);
- metric collectors: ``fn(now) -> Iterable[Metric]`` behind ``/metrics``, computed from the
  database so that what any worker did is visible from every web process;
- activity sources: ``fn(since, until) -> dict``, one section of the delta view each, and
  optionally ``events(since, until, limit) -> list[ActivityEvent]``, their recent events;
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
class ActivityEvent:
    """One thing that happened, for the list on ``/activity/``: ``what`` in words ("Alert
    acknowledged"), the thing it happened to and a link to its page; ``status`` names the
    badge (ok, warning, critical, unknown) or is empty."""

    at: datetime
    what: str
    subject: str
    url: str
    status: str = ""
    detail: str = ""


# events(since, until, limit): the newest ``limit`` events in the window, newest first, in one
# query: the page merges every source's list, so none may be slow or unbounded.
EventSource = Callable[[datetime, datetime, int], list[ActivityEvent]]


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
_event_sources: dict[str, EventSource] = {}
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


def register_activity_source(
    section: str, source: ActivitySource, events: EventSource | None = None
) -> None:
    _activity_sources[section] = source
    if events is not None:
        _event_sources[section] = events


def activity_sources() -> dict[str, ActivitySource]:
    return dict(_activity_sources)


def event_sources() -> dict[str, EventSource]:
    return dict(_event_sources)


def register_panel(panel: DashboardPanel) -> None:
    _panels[panel.name] = panel


def dashboard_panels() -> list[DashboardPanel]:
    return sorted(_panels.values(), key=lambda panel: (panel.order, panel.name))


def register_retention_rule(rule: RetentionRule) -> None:
    _retention_rules[rule.name] = rule


def retention_rules() -> list[RetentionRule]:
    return list(_retention_rules.values())
