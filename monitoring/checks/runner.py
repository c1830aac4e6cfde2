"""Claiming due checks, probing them (``prober``) and recording their runs.

Database writes stay on the calling thread; probes never write.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from monitoring.checks.prober import ProbeResult, probe_concurrently
from monitoring.models import Check
from monitoring.observability.stalled import check_monitoring_stalled
from opsconsole.logging import job_context

logger = logging.getLogger(__name__)


def run_checks(checks: list[Check], *, claim: bool = True) -> list[ProbeResult]:
    """Claims (unless forced), probes and records the given checks.

    With ``claim``, a check whose due slot another runner took first is skipped, so two
    runners started together run each due check once.
    """
    now = timezone.now()
    if claim:
        with transaction.atomic():
            checks = [check for check in checks if check.claim_due_slot(now)]
    else:
        for check in checks:
            # A forced run still moves the slot, so the next due run is an interval later.
            check.claim_due_slot(now)
    results = probe_concurrently(checks)
    for result in results:
        with job_context(check=result.check.name, phase="record"):
            try:
                result.run = result.check.record(result.observation, duration_ms=result.duration_ms)
            except Exception as exc:  # noqa: BLE001 - one check's failure must not lose the pass
                # A database error or a lock timeout on one check: its transaction rolled
                # back, the others are still recorded. Its slot was claimed above, so it
                # runs again at its next slot, not in a retry storm.
                result.error = f"not recorded: {type(exc).__name__}: {exc}"
                logger.exception(
                    "recording the run of %s failed; it runs again at its next slot",
                    result.check.name,
                    extra={"check": result.check.name},
                )
    return results


def run_due_checks() -> list[ProbeResult]:
    """The scheduled job: run every check that is due now."""
    with job_context(job_name="run_due_checks"):
        # Before running: a long gap since the last run is the stall to report.
        check_monitoring_stalled()
        checks = list(Check.due(timezone.now()).order_by("next_run_at", "id"))
        results = run_checks(checks, claim=True)
        logger.info("ran %d due checks", len(results), extra={"count": len(results)})
        return results
