from __future__ import annotations

import json
import signal
import sys
import threading

from django.core.management.base import BaseCommand, CommandError

from monitoring.checks.runner import Runner, run_checks, run_due_checks
from monitoring.models import SEVERITY_RANK, Check, CheckStatus
from opsconsole.logging import job_run

_COLOURS = {
    CheckStatus.OK: "\033[32m",
    CheckStatus.WARNING: "\033[33m",
    CheckStatus.CRITICAL: "\033[31m",
    CheckStatus.UNKNOWN: "\033[90m",
}


class Command(BaseCommand):
    help = (
        "Run the checks that are due (default), all checks (--all) or named ones (--check NAME). "
        "Probes run concurrently (CHECKS_MAX_CONCURRENCY), each cut off at its own timeout. "
        "Safe to run from cron beside the scheduler: each due check is claimed once. "
        "With --loop it keeps running as a check runner: any number of runners, on any "
        "machines, share the due checks; SIGTERM or Ctrl-C stops it after the batch it holds "
        "(a second one gives the batch back at once)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="run every enabled check now")
        parser.add_argument(
            "--check",
            action="append",
            default=[],
            metavar="NAME",
            help="run this check now (repeatable); runs it even if disabled",
        )
        parser.add_argument(
            "--reset-baseline",
            action="append",
            default=[],
            metavar="NAME",
            help="start this check's baseline afresh (its current level becomes normal; "
            "logged on its open alert, else on its runs) and run nothing; repeatable",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            help="keep running: claim due checks every second and run them as they fall due "
            "(intervals down to 10 s); stop with SIGTERM or Ctrl-C",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=0,
            metavar="N",
            help="with --loop: probes in flight at most (default CHECKS_MAX_CONCURRENCY)",
        )
        parser.add_argument("--json", action="store_true", help="print the results as JSON")
        parser.add_argument(
            "--fail-on",
            choices=("warning", "critical"),
            help="exit 1 if any result is at least this bad (for cron and CI)",
        )

    def handle(self, *args, **options):
        if options["reset_baseline"]:
            self._reset_baselines(options["reset_baseline"])
            return
        if options["loop"]:
            if options["concurrency"] < 0:
                raise CommandError("--concurrency must be at least 1")
            self._loop(options["concurrency"])
            return
        names = options["check"]
        with job_run("runchecks") as job:
            if names:
                checks = list(Check.objects.filter(name__in=names))
                missing = sorted(set(names) - {c.name for c in checks})
                if missing:
                    raise CommandError(
                        f"no check named {', '.join(map(repr, missing))}; "
                        "list them with: manage.py runchecks --all --json, or in the admin"
                    )
                results = run_checks(checks, claim=False)
            elif options["all"]:
                results = run_checks(list(Check.objects.filter(enabled=True)), claim=False)
            else:
                # The same function the schedule runs: cron and the scheduler do one thing.
                results = run_due_checks()
            by_status: dict[str, int] = {}
            for r in results:
                by_status[r.check.status] = by_status.get(r.check.status, 0) + 1
            job.count(checks=len(results), **by_status)

        rows = [
            {
                "name": r.check.name,
                # The run's own result, before debounce ("unrecorded" when storing it failed).
                "status": r.run.status if r.run else "unrecorded",
                "value": r.run.value if r.run else r.observation.value,
                "message": r.run.message if r.run else (r.error or ""),
                "duration_ms": round(r.duration_ms, 1),
                # The check's status after debounce: what alerts follow.
                "check_status": r.check.status,
                "changed": bool(r.run and r.run.status_changed),
            }
            for r in results
        ]
        if options["json"]:
            self.stdout.write(json.dumps({"results": rows}, indent=2))
        else:
            self._table(rows)
        threshold = options["fail_on"]
        if threshold:
            # The check's status after debounce: a failing run that did not change the check
            # (debounce: 3, first failure) is not a failure for cron either.
            limit = SEVERITY_RANK[CheckStatus(threshold)]
            if any(SEVERITY_RANK[CheckStatus(r["check_status"])] >= limit for r in rows):
                sys.exit(1)

    def _loop(self, concurrency: int) -> None:
        runner = Runner(concurrency=concurrency)
        stop, give_up = threading.Event(), threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            # The first signal finishes the batch in hand; a second gives it back unrun.
            (give_up if stop.is_set() else stop).set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(
            f"runner {runner.name} started: up to {runner.concurrency} probes at once; "
            "SIGTERM or Ctrl-C stops it"
        )
        self.stdout.flush()
        with job_run("runchecks", mode="loop") as job:
            runner.run_forever(stop, give_up)
            job.count(runs=runner.recorded)
        self.stdout.write(f"runner {runner.name} stopped after {runner.recorded} runs")

    def _reset_baselines(self, names: list[str]) -> None:
        checks = {c.name: c for c in Check.objects.filter(name__in=names)}
        missing = sorted(set(names) - set(checks))
        if missing:
            raise CommandError(f"no check named {', '.join(map(repr, missing))}; nothing reset")
        without = sorted(name for name, check in checks.items() if not check.baseline)
        if without:
            raise CommandError(
                f"{', '.join(map(repr, without))} has no baseline rule; nothing reset"
            )
        for name in names:
            where = checks[name].reset_baseline("runchecks --reset-baseline")
            self.stdout.write(f"{name}: baseline reset (logged on {where})")

    def _table(self, rows: list[dict]) -> None:
        if not rows:
            self.stdout.write("No checks due. Use --all to run every check now.")
            return
        colour = self.stdout.isatty()
        width = max(len(r["name"]) for r in rows)
        # CHECK is the check's status after debounce (what alerts follow); RUN is this run's
        # raw result. "critical" under RUN beside "ok" under CHECK did not change the check.
        self.stdout.write(
            f"{'NAME':<{width}}  {'CHECK':<8}  {'RUN':<10}  {'VALUE':>10}  {'TIME':>8}  MESSAGE"
        )
        for r in rows:
            check_status = f"{r['check_status']:<8}"
            if colour:
                check_status = f"{_COLOURS.get(r['check_status'], '')}{check_status}\033[0m"
            run_status = r["status"] + ("*" if r["changed"] else "")
            value = "" if r["value"] is None else f"{r['value']:g}"
            self.stdout.write(
                f"{r['name']:<{width}}  {check_status}  {run_status:<10}  {value:>10}  "
                f"{r['duration_ms']:>6.0f}ms  {r['message']}"
            )
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["check_status"]] = counts.get(r["check_status"], 0) + 1
        changed = sum(1 for r in rows if r["changed"])
        self.stdout.write(
            f"{len(rows)} checks: "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f" (after debounce; {changed} changed status, marked *)"
        )
