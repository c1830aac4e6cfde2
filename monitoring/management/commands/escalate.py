from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from monitoring.alerts.escalation import escalate_pass
from monitoring.observability.stalled import check_monitoring_stalled
from opsconsole.logging import job_run


class Command(BaseCommand):
    help = (
        "Send the alert notifications that are due: first notices, escalation to wider channels, "
        "reminders until acknowledged, recovery notices, and retries of failed deliveries. "
        "One pass by default (cron: every minute); --loop keeps running. Safe to run in "
        "several processes at once: each due step is claimed in the database and sent once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop", action="store_true", help="run a pass every --interval seconds until stopped"
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=60.0,
            help="seconds between passes with --loop (default 60)",
        )

    def handle(self, *args, loop: bool, interval: float, **options):
        stop = {"now": False}

        def request_stop(signum, frame):
            stop["now"] = True

        if loop:
            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
        while True:
            close_old_connections()
            with job_run("escalate") as job:
                # A stall is reported first, so its alert goes out in this same pass.
                check_monitoring_stalled()
                result = escalate_pass()
                job.count(
                    due=result.claimed,
                    sent=result.sent,
                    retrying=result.retrying,
                    failed=result.failed,
                    muted_alerts=result.muted_alerts,
                )
            self.stdout.write(f"escalate: {result.summary()}")
            for error in result.errors:
                self.stderr.write(error)
            if not loop or stop["now"]:
                return
            deadline = time.monotonic() + max(interval, 1.0)
            while time.monotonic() < deadline and not stop["now"]:
                time.sleep(0.2)
            if stop["now"]:
                return
