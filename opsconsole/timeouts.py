"""Every time limit a worker works under, derived from the waits that can happen inside it.

A lease (a batch chunk), a claim (backlog entries) or a task (django-q2) that ends while the work
inside it can still be running hands that work to a second worker: it is done twice. So each
limit is computed here, in one place, from:

- ``lock_wait()`` W: the longest a write waits for the database lock. SQLite: its busy timeout
  (``SQLITE_BUSY_TIMEOUT``, set on every connection by ``opsconsole.env.sqlite_database``).
  PostgreSQL: 0, since claims skip locked rows and the rows a worker writes are locked only by
  single-statement updates, which ``SLACK`` covers.
- ``SLACK`` S: database writes, a thread start, scheduling.

and they relate as (docs/deployment.md, "Timeouts and leases"):

- batch chunk lease = its items' timeouts + ``lease_margin()`` (W + S);
- check runner lease = the batch's longest probe timeout + a probe's abandon margin + W + S
  (``check_lease``; every probe of a batch starts when it is claimed);
- backlog scheduled run budget B = task timeout T - handler timeout H - W - S, so the last
  handler call and its write end before django-q2 stops the task;
- backlog claims are refreshed every R = (C - 2W - S) / 2 while held (C: the claim timeout), so a
  live claim is never older than C even when the refresh and the reader both waited W.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SQLITE_BUSY_TIMEOUT = 30.0
SLACK = 15.0
# django-q2's task timeout; the ORM broker delivers an unacknowledged task again after "retry",
# which must outlast the timeout or a running task is started a second time.
TASK_TIMEOUT = 300
TASK_RETRY = TASK_TIMEOUT + 60
MIN_CLAIM_REFRESH = 1.0
MIN_BACKLOG_BUDGET = 1.0


def lock_wait(database: Mapping[str, Any] | None = None) -> float:
    """W: the longest a write waits for the database lock."""
    if database is None:
        database = settings.DATABASES["default"]
    if "sqlite" in database["ENGINE"]:
        return float(database.get("OPTIONS", {}).get("timeout", 5.0))  # sqlite3's own default
    return 0.0


def lease_margin(database: Mapping[str, Any] | None = None) -> float:
    """What a batch chunk's lease adds to its items' own timeouts."""
    return lock_wait(database) + SLACK


# What a check runner's lease adds past a probe's own timeout before the lock wait and slack:
# the prober abandons a probe a moment after its timeout (monitoring.checks.prober).
PROBE_ABANDON_MARGIN = 1.0


def check_lease(max_timeout: float, database: Mapping[str, Any] | None = None) -> float:
    """How long a runner holds the checks it claimed: every probe of the batch starts at once
    and ends by its timeout (the longest is ``max_timeout``), then one recording transaction
    may wait W for the lock; S covers the rest. Past this, another runner takes the slot."""
    return float(max_timeout) + PROBE_ABANDON_MARGIN + lease_margin(database)


def backlog_run_budget(
    task_timeout: float | None = None,
    handler_timeout: float | None = None,
    database: Mapping[str, Any] | None = None,
) -> float:
    """B: how long the scheduled backlog run starts new entries."""
    # Settings are read at each call: tests and operators change them after import.
    task = float(settings.Q_CLUSTER["timeout"] if task_timeout is None else task_timeout)
    handler = float(
        settings.BACKLOG_WEBHOOK_TIMEOUT if handler_timeout is None else handler_timeout
    )
    budget = task - handler - lock_wait(database) - SLACK
    if budget < MIN_BACKLOG_BUDGET:
        raise ImproperlyConfigured(
            f"BACKLOG_WEBHOOK_TIMEOUT ({handler:g} s) leaves {budget:g} s of the {task:g} s task "
            f"timeout for the backlog run (one handler call, a {lock_wait(database):g} s lock wait "
            f"and {SLACK:g} s of slack must fit after it); lower BACKLOG_WEBHOOK_TIMEOUT"
        )
    return budget


def minimum_backlog_claim_timeout(database: Mapping[str, Any] | None = None) -> float:
    return 2 * lock_wait(database) + SLACK + 2 * MIN_CLAIM_REFRESH


def backlog_claim_refresh(
    claim_timeout: float | None = None, database: Mapping[str, Any] | None = None
) -> float:
    """R: how often a worker refreshes the claim of the entries it holds."""
    claim = float(settings.BACKLOG_CLAIM_TIMEOUT if claim_timeout is None else claim_timeout)
    minimum = minimum_backlog_claim_timeout(database)
    if claim < minimum:
        raise ImproperlyConfigured(
            f"BACKLOG_CLAIM_TIMEOUT ({claim:g} s) must be at least {minimum:g} s on this "
            f"database: twice the {lock_wait(database):g} s lock wait, {SLACK:g} s of slack and "
            f"{2 * MIN_CLAIM_REFRESH:g} s between refreshes"
        )
    return (claim - 2 * lock_wait(database) - SLACK) / 2


def check(
    *,
    database: Mapping[str, Any],
    task_timeout: float,
    handler_timeout: float,
    claim_timeout: float,
) -> None:
    """At start: settings that break a relation above are refused, naming the variable."""
    backlog_run_budget(task_timeout, handler_timeout, database)
    backlog_claim_refresh(claim_timeout, database)
