"""``manage.py backlog``: the pending-sync helper for operators and cron."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backlog import services
from backlog.models import DEFAULT_SOURCE, BacklogEntry, BacklogStatus
from opsconsole.api import BadRequest
from opsconsole.env import format_duration
from opsconsole.logging import JobTrail, job_run

STATUS_CHOICES = [s.value for s in BacklogStatus]


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class Command(BaseCommand):
    help = (
        "Manage the backlog of pending syncs: add keys, see what waits, deliver entries to their "
        "handlers (BACKLOG_HANDLERS), retry or clear them. Run 'backlog SUBCOMMAND --help'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

        add = sub.add_parser(
            "add",
            help="queue a key (or many, with --file); a key already pending is not queued twice",
        )
        add.add_argument("key", nargs="?", help="the key to sync, e.g. a user id")
        add.add_argument("reason", nargs="?", default="", help="why it needs a sync (free text)")
        add.add_argument(
            "--source",
            default=DEFAULT_SOURCE,
            help="the source (handler) it belongs to; default: %(default)s",
        )
        add.add_argument("--payload", help="a JSON object handed to the handler")
        add.add_argument(
            "--file",
            metavar="PATH",
            help="queue every line of PATH ('-' for stdin): a key per line, or JSON lines "
            '{"key": …, "source": …, "reason": …, "payload": {…}}',
        )

        lst = sub.add_parser("list", help="list entries, oldest first")
        lst.add_argument(
            "--status",
            default=BacklogStatus.PENDING,
            choices=[*STATUS_CHOICES, "all"],
            help="default: %(default)s",
        )
        lst.add_argument("--source")
        lst.add_argument("--limit", type=_positive_int, default=50, help="default: %(default)s")
        lst.add_argument("--json", action="store_true", help="print JSON instead of a table")

        status = sub.add_parser(
            "status",
            help="counts by status and source, oldest pending age, processed in the last hour",
        )
        status.add_argument("--json", action="store_true", help="print JSON instead of text")

        process = sub.add_parser(
            "process",
            help="deliver due entries to their handlers (what the 5-minute schedule runs)",
        )
        process.add_argument(
            "--dry-run",
            "--test",
            dest="dry_run",
            action="store_true",
            help="say what would happen to each due entry and change nothing "
            "(--test is the backlog helper's spelling)",
        )
        process.add_argument("--limit", type=_positive_int, help="handle at most N entries")
        process.add_argument("--source", help="only this source")

        clear = sub.add_parser("clear", help="delete entries (asks first)")
        clear.add_argument("--source", help="only this source")
        clear.add_argument("--status", choices=STATUS_CHOICES, help="only this status")
        clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")

        mark = sub.add_parser(
            "mark_processed",
            help="mark a pending or failed key processed without calling its handler",
        )
        mark.add_argument("key")
        mark.add_argument(
            "--source",
            help="the key's source; needed only when the key is pending or failed in more than "
            "one source",
        )

        retry = sub.add_parser(
            "retry_failed", help="put failed entries back to pending with fresh attempts"
        )
        retry.add_argument("--source", help="only this source")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['subcommand']}")(options)

    # --- subcommands -----------------------------------------------------------------------------

    def do_add(self, options: dict[str, Any]) -> None:
        if options["file"]:
            if options["key"] or options["payload"]:
                raise CommandError("give either KEY (with --payload) or --file, not both")
            self._add_file(options)
            return
        if not options["key"]:
            raise CommandError("give a KEY to add, or --file PATH (or --file - for stdin)")
        payload = None
        if options["payload"] is not None:
            try:
                payload = json.loads(options["payload"])
            except json.JSONDecodeError as exc:
                raise CommandError(
                    f"--payload is not valid JSON: {exc.msg} at position {exc.pos}"
                ) from None
            if not isinstance(payload, dict):
                raise CommandError('--payload must be a JSON object, e.g. \'{"email": "a@b.c"}\'')
        try:
            entry = services.enqueue(options["source"], options["key"], options["reason"], payload)
        except BadRequest as exc:
            raise CommandError(f"not added: {exc.describe_fields()}") from None
        if entry.was_created:
            self.stdout.write(f"added {entry.source}:{entry.key} (entry {entry.pk})")
        else:
            self.stdout.write(
                f"already pending: {entry.source}:{entry.key} (entry {entry.pk}, queued "
                f"{entry.created_at:%Y-%m-%d %H:%M:%S} UTC)"
            )

    def _add_file(self, options: dict[str, Any]) -> None:
        path = options["file"]
        try:
            if path == "-":
                lines = sys.stdin.read().splitlines()
            else:
                with open(path, encoding="utf-8") as handle:
                    lines = handle.read().splitlines()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text") from None
        try:
            specs = services.parse_entry_lines(
                lines, source=options["source"], reason=options["reason"] or ""
            )
        except BadRequest as exc:
            raise CommandError(f"nothing added: {exc.describe_fields()}") from None
        result = services.enqueue_many(specs)
        self.stdout.write(
            f"added {result.added}, already pending {result.already_pending} "
            f"(from {len(specs)} lines of {'stdin' if path == '-' else path})"
        )

    def do_list(self, options: dict[str, Any]) -> None:
        status = None if options["status"] == "all" else options["status"]
        rows = services.entries(status=status, source=options["source"], limit=options["limit"])
        if options["json"]:
            self.stdout.write(json.dumps([entry.as_json() for entry in rows], indent=2))
            return
        if not rows:
            self.stdout.write(f"no {status or ''} entries".replace("  ", " "))
            return
        self.stdout.write(
            f"{'SOURCE':<14} {'KEY':<30} {'STATUS':<10} {'TRIES':>5}  {'QUEUED (UTC)':<19}  "
            "REASON / LAST ERROR"
        )
        for entry in rows:
            note = entry.last_error or entry.reason
            self.stdout.write(
                f"{entry.source:<14} {entry.key:<30} {entry.status:<10} {entry.attempts:>5}  "
                f"{entry.created_at:%Y-%m-%d %H:%M:%S}  {note[:60]}"
            )
        if len(rows) == options["limit"]:
            self.stdout.write(f"(first {len(rows)}; use --limit to see more)")

    def do_status(self, options: dict[str, Any]) -> None:
        figures = services.stats()
        if options["json"]:
            self.stdout.write(json.dumps(figures, indent=2))
            return
        self.stdout.write("Backlog: " + ", ".join(f"{figures[s]:,} {s}" for s in STATUS_CHOICES))
        age = figures["oldest_pending_age_seconds"]
        self.stdout.write(
            f"Oldest pending: {format_duration(age) + ' ago' if age is not None else 'none'}"
        )
        self.stdout.write(f"Processed in the last hour: {figures['processed_last_hour']:,}")
        if figures["by_source"]:
            self.stdout.write(f"{'SOURCE':<20}" + "".join(f"{s:>12}" for s in STATUS_CHOICES))
            for source, counts in figures["by_source"].items():
                self.stdout.write(
                    f"{source:<20}" + "".join(f"{counts.get(s, 0):>12,}" for s in STATUS_CHOICES)
                )

    def do_process(self, options: dict[str, Any]) -> None:
        # The subcommand cron runs: it leaves a start and a finish (or failure) line.
        with job_run("backlog process", mode="dry-run" if options["dry_run"] else "deliver") as job:
            self._process(options, job)

    def _process(self, options: dict[str, Any], job: JobTrail) -> None:
        if options["dry_run"]:
            self._dry_run(options, job)
            return
        stopping = {"flag": False}

        def request_stop(signum: int, frame: Any) -> None:
            stopping["flag"] = True

        previous = signal.signal(signal.SIGTERM, request_stop) if _main_thread() else None
        try:
            report = services.process(
                limit=options["limit"], source=options["source"], stop=lambda: stopping["flag"]
            )
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        job.count(
            processed=report.processed,
            retrying=report.retrying,
            failed=report.failed,
            released=report.released,
        )
        rate = report.handled / report.seconds if report.seconds > 0 else 0
        self.stdout.write(
            f"processed {report.processed}, retrying later {report.retrying}, "
            f"failed {report.failed} "
            f"in {report.seconds:.1f}s ({rate:.0f}/s)"
            + (f"; {report.released} stale claims released" if report.released else "")
        )
        for source, key, error in report.errors[:20]:
            self.stdout.write(f"  {source}:{key}: {error}")
        if len(report.errors) > 20:
            self.stdout.write(
                f"  … and {len(report.errors) - 20} more errors ('backlog list --status failed')"
            )

    def _dry_run(self, options: dict[str, Any], job: JobTrail) -> None:
        plan = services.dry_run(limit=options["limit"], source=options["source"])
        job.count(would_process=plan["would_process"])
        self.stdout.write(
            f"dry run: would process {plan['would_process']} due entries (nothing changed)"
        )
        # One line per entry, saying the one thing that would happen to it.
        for source, key, attempts in plan["first"]:
            outcome = plan["by_source"][source]["outcome"]
            self.stdout.write(f"  {source}:{key} (attempt {attempts + 1}): {outcome}")
        more = plan["would_process"] - len(plan["first"])
        if more > 0:
            counts = ", ".join(f"{name} {info['due']}" for name, info in plan["by_source"].items())
            self.stdout.write(f"  … and {more} more (due by source: {counts})")
        if plan["waiting_for_retry"]:
            self.stdout.write(
                f"  {plan['waiting_for_retry']} more pending, waiting for their retry time"
            )

    def do_clear(self, options: dict[str, Any]) -> None:
        queryset = BacklogEntry.objects.all()
        if options["source"]:
            queryset = queryset.filter(source=options["source"])
        if options["status"]:
            queryset = queryset.filter(status=options["status"])
        what = f"status={options['status'] or 'any'}, source={options['source'] or 'any'}"
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError(
                    f"refusing to delete backlog entries ({what}) without confirmation: "
                    "no terminal "
                    "to ask on. Pass --yes to confirm."
                )
            count = queryset.count()
            answer = input(f"Delete {count:,} backlog entries ({what})? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                self.stdout.write("nothing deleted")
                return
        deleted = services.clear(source=options["source"], status=options["status"])
        self.stdout.write(f"deleted {deleted:,} backlog entries ({what})")

    def do_mark_processed(self, options: dict[str, Any]) -> None:
        key, source = options["key"], options["source"]
        if source is None:
            # The helper's `mark_processed USER_ID` names no source: the key's own, when only
            # one source has it pending or failed.
            sources = services.sources_with_open_key(key)
            if len(sources) > 1:
                raise CommandError(
                    f"key {key!r} is pending or failed in {len(sources)} sources: "
                    f"{', '.join(sources)}; say which with --source"
                )
            source = sources[0] if sources else None
        count = services.mark_key_processed(key, source) if source is not None else 0
        if not count:
            held = BacklogEntry.objects.filter(key=key, status=BacklogStatus.PROCESSING)
            if source is not None:
                held = held.filter(source=source)
            holder = held.values_list("source", flat=True).first()
            if holder is not None:
                raise CommandError(
                    f"{holder}:{key} is being processed by a worker right now; try again shortly"
                )
            where = f"in source {source!r}" if source is not None else "in any source"
            raise CommandError(
                f"no pending or failed entry for key {key!r} {where} "
                "(see 'backlog list --status all')"
            )
        self.stdout.write(
            f"marked {count} entr{'y' if count == 1 else 'ies'} of {source}:{key} processed"
        )

    def do_retry_failed(self, options: dict[str, Any]) -> None:
        requeued, skipped = services.retry_failed(options["source"])
        self.stdout.write(f"requeued {requeued} failed entries")
        if skipped:
            self.stdout.write(f"skipped {skipped}: their key is already pending again")


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
