"""Claiming due checks, probing them (``prober``) and recording their runs.

One mechanism for every way checks run: the long-running runner (``runchecks --loop``), the
scheduled pass (``run_due_checks``, django-q2's default) and ``runchecks`` from cron all use
``Runner``; "run now" probes named checks and records them through the same ``record_runs``.

A runner claims due checks in batches (``Check.claim_due``: a lease on each check's slot) and
probes each batch on a thread of its own, all of a batch's probes at once, so it never holds
a claim it is not probing and every probe ends (its timeout) well inside the lease. Database
writes stay on the runner's own thread: it records the batches whose probes finished (one
transaction for all of them) while others are still probing, so one slow target delays only
the recording of its own batch, never another check's slot.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from monitoring.checks.prober import ProbeResult, probe_concurrently
from monitoring.kinds import Observation
from monitoring.models import Check, CheckRun
from monitoring.models.checks import PendingRun, record_runs
from monitoring.observability.stalled import check_monitoring_stalled
from opsconsole.logging import job_context
from opsconsole.registries import DashboardPanel, register_panel
from opsconsole.timeouts import check_lease

logger = logging.getLogger(__name__)

# The scheduled pass fires once a minute, give or take: it takes slots due within this much
# of its start, so a one-minute check runs every minute, not every two.
PASS_LOOKAHEAD = timedelta(seconds=5)
# The runner loop looks for due checks at least this often.
POLL_SECONDS = 1.0


def lease_seconds(checks: list[Check]) -> float:
    """The lease of a claimed batch, from its longest probe timeout (opsconsole.timeouts)."""
    return check_lease(max(check.timeout_seconds for check in checks))


def runner_name() -> str:
    """This process as an operator finds it: host and PID."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


@dataclass
class _Batch:
    checks: list[Check]
    owner: str
    claimed_at: datetime
    results: list[ProbeResult] | None = None
    failure: str | None = None


@dataclass
class Runner:
    """Claims, probes and records due checks; ``handle_one`` is one turn of its loop.

    ``concurrency``: probes in flight at most (default CHECKS_MAX_CONCURRENCY). A batch is at
    most half of that, so one batch probes while another is recorded, and a new one is claimed
    only when a quarter is free (or nothing is in flight), so claims stay batches, not one
    check at a time. ``horizon``: a scheduled pass takes slots due up to
    that moment and moves each check past it (``next_slot``), so it runs each check once and
    ends; the loop (``horizon=None``) takes slots as they fall due. ``only``: these checks.
    """

    concurrency: int = 0
    horizon: datetime | None = None
    only: list[int] | None = None
    keep_results: bool = False
    name: str = field(default_factory=runner_name)
    results: list[ProbeResult] = field(default_factory=list)
    recorded: int = 0
    stopping: bool = False
    _in_flight: dict[str, _Batch] = field(default_factory=dict)
    _finished: queue.Queue[_Batch] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.concurrency = self.concurrency or int(settings.CHECKS_MAX_CONCURRENCY)

    # --- one turn --------------------------------------------------------------------------
    @property
    def probing(self) -> int:
        return sum(len(batch.checks) for batch in self._in_flight.values())

    def handle_one(self, wait: float = POLL_SECONDS) -> bool:
        """Records what finished, claims a batch if there is room; then waits up to ``wait``
        for a batch to finish (not at all if there may be more due). True if it did work."""
        did = self.record_finished() > 0
        claimed = 0 if self.stopping else self.claim()
        if claimed:
            did = True
        if claimed and self.probing < self.concurrency:
            return did  # there may be more due: claim again at once
        if self._in_flight:
            try:
                batch = self._finished.get(timeout=max(wait, 0))
                self._finished.put(batch)
            except queue.Empty:
                pass
        elif wait > 0 and not claimed:
            time.sleep(wait)
        return did

    def claim(self) -> int:
        free = self.concurrency - self.probing
        if free <= 0 or (self._in_flight and free < max(1, self.concurrency // 4)):
            return 0
        owner = f"{self.name}:{secrets.token_hex(4)}"
        now = timezone.now()
        checks = Check.claim_due(
            now,
            # At most half the room: while one batch is recorded another is probing.
            limit=min(free, max(1, self.concurrency // 2)),
            owner=owner,
            lease_for=lease_seconds,
            until=self.horizon,
            only=self.only,
        )
        if not checks:
            return 0
        batch = _Batch(checks, owner, now)
        self._in_flight[owner] = batch
        threading.Thread(
            target=self._probe, args=(batch,), daemon=True, name=f"batch-{owner}"
        ).start()
        return len(checks)

    def _probe(self, batch: _Batch) -> None:
        # Every probe of the batch starts now: its lease was sized for exactly that.
        try:
            batch.results = probe_concurrently(batch.checks, max_concurrency=len(batch.checks))
        except BaseException as exc:  # noqa: BLE001 - the batch is recorded as failed
            batch.failure = f"probe error: {type(exc).__name__}: {exc}"
        finally:
            self._finished.put(batch)

    def record_finished(self) -> int:
        """Records every batch whose probes finished, in one transaction; returns the runs."""
        batches: list[_Batch] = []
        while True:
            try:
                batch = self._finished.get_nowait()
            except queue.Empty:
                break
            if self._in_flight.pop(batch.owner, None) is not None:
                batches.append(batch)
        if not batches:
            return 0
        now = timezone.now()
        pending: list[tuple[PendingRun, ProbeResult]] = []
        for batch in batches:
            results = batch.results or [
                ProbeResult(check, Observation(error=batch.failure or "not probed"), 0.0)
                for check in batch.checks
            ]
            for result in results:
                check = result.check
                pending.append(
                    (
                        PendingRun(
                            check,
                            result.observation,
                            result.duration_ms,
                            now,
                            slot_at=check.lease_slot_at,
                            lease_owner=batch.owner,
                            after=self.horizon,
                        ),
                        result,
                    )
                )
        with job_context(phase="record"):
            record_runs([p for p, _ in pending])
        recorded = 0
        for p, result in pending:
            result.run, result.error = p.run, p.error
            if p.run is not None:
                recorded += 1
            elif not p.superseded:
                # Not stored (the database refused it): the slot is given up, so the check
                # runs again at its next slot, not in a retry storm.
                logger.warning(
                    "the run of %s was not recorded (%s); it runs again at its next slot",
                    p.check.name,
                    p.error,
                    extra={"check": p.check.name},
                )
                Check.skip_slot(p.check, now)
            if self.keep_results:
                self.results.append(result)
        self.recorded += recorded
        return recorded

    # --- whole runs --------------------------------------------------------------------------
    def run_pass(self) -> list[ProbeResult]:
        """Runs what is due until nothing is left and every batch is recorded."""
        while True:
            self.handle_one(wait=0.2)
            if not self._in_flight and self._finished.empty():
                # Nothing probing: one more claim decides whether the pass is over.
                if not self.claim():
                    break
        return self.results

    def run_forever(
        self, should_stop: threading.Event, give_up: threading.Event | None = None
    ) -> None:
        """The loop of ``runchecks --loop``: until ``should_stop`` is set; then ``finish``."""
        last_stall_check = 0.0
        while not should_stop.is_set():
            if time.monotonic() - last_stall_check > 60:
                # A long gap since the last run is the stall to report (and resolve).
                check_monitoring_stalled()
                last_stall_check = time.monotonic()
            # A connection the database dropped (a restart, a failover) is replaced.
            close_old_connections()
            try:
                self.handle_one(wait=POLL_SECONDS)
            except Exception:  # noqa: BLE001 - the loop outlives a database outage
                # What this turn held runs again when its leases end, on any runner.
                logger.exception("check runner turn failed; retrying in %gs", POLL_SECONDS)
                should_stop.wait(POLL_SECONDS)
        self.finish(give_up)

    def finish(self, give_up: threading.Event | None = None) -> None:
        """Claims nothing more and records the batches in flight as their probes end (each
        by its timeout). Once ``give_up`` is set (a second Ctrl-C), what is still held is
        released instead: due again at once, for the same slots, on another runner."""
        self.stopping = True
        while self._in_flight:
            if give_up is not None and give_up.is_set():
                released = self.release()
                logger.warning("released %d claimed checks unrun", released)
                return
            try:
                batch = self._finished.get(timeout=0.2)
                self._finished.put(batch)
            except queue.Empty:
                continue
            self.record_finished()

    def release(self) -> int:
        held = [check for batch in self._in_flight.values() for check in batch.checks]
        self._in_flight.clear()
        return Check.release(held, timezone.now())


# --- entry points ----------------------------------------------------------------------------


def run_checks(checks: list[Check], *, claim: bool = True) -> list[ProbeResult]:
    """Runs the given checks: their due slots (``claim``, the others are skipped: another
    runner has them or they are not due), or now whatever their schedule ("run now", which
    moves the next slot an interval on)."""
    if claim:
        runner = Runner(
            horizon=timezone.now() + PASS_LOOKAHEAD,
            only=[check.pk for check in checks],
            keep_results=True,
        )
        return runner.run_pass()
    results = probe_concurrently(checks)
    now = timezone.now()
    pending = [PendingRun(r.check, r.observation, r.duration_ms, now, forced=True) for r in results]
    with job_context(phase="record"):
        record_runs(pending)
    for p, result in zip(pending, results, strict=True):
        result.run, result.error = p.run, p.error
    return results


def run_due_checks() -> list[ProbeResult]:
    """The scheduled job (and ``runchecks`` from cron): one pass over every check due now."""
    with job_context(job_name="run_due_checks"):
        # Before running: a long gap since the last run is the stall to report.
        check_monitoring_stalled()
        runner = Runner(horizon=timezone.now() + PASS_LOOKAHEAD, keep_results=True)
        results = runner.run_pass()
        logger.info("ran %d due checks", len(results), extra={"count": len(results)})
        return results


# --- the dashboard's lag panel ----------------------------------------------------------------

LAG_SAMPLE = 500
OVERDUE_AFTER = timedelta(seconds=5)


def runner_lag(now: datetime) -> dict[str, Any]:
    """How late the latest scheduled runs were (slot to stored) and how many checks are
    overdue now; two indexed queries whatever the number of runs."""
    rows = list(
        CheckRun.objects.filter(slot_at__isnull=False)
        .order_by("-created_at", "-id")
        .values_list("created_at", "slot_at")[:LAG_SAMPLE]
    )
    lags = sorted(max(0.0, (created - slot).total_seconds()) for created, slot in rows)
    overdue = Check.due(now - OVERDUE_AFTER).count()
    panel: dict[str, Any] = {"runs": len(lags), "overdue": overdue}
    if lags:
        panel.update(
            p50=round(statistics.median(lags), 2),
            p99=round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 2),
            max=round(lags[-1], 2),
            since=rows[-1][0],
        )
    return panel


def register_panels() -> None:
    """The runners' panel; called from ``MonitoringConfig.ready``."""
    register_panel(DashboardPanel("runner_lag", "pages/panels/runner_lag.html", runner_lag, 45))
