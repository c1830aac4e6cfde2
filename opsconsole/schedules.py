"""The registry of periodic jobs that ``setup_schedules`` installs in django-q2.

Apps register their jobs in ``AppConfig.ready``; every job is also a management command, so
cron can run it instead (README: Deployment).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    func: str  # dotted path of the task function
    minutes: int
    command: str  # the equivalent management command, for cron
    description: str


_jobs: dict[str, PeriodicJob] = {}


def register_job(job: PeriodicJob) -> None:
    _jobs[job.name] = job


def periodic_jobs() -> list[PeriodicJob]:
    return sorted(_jobs.values(), key=lambda job: job.name)
