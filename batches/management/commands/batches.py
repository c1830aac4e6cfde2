"""``manage.py batches create|list|show|retry|cancel|recover``: batches without the API."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from batches import services
from batches.executor import recover
from opsconsole.api import BadRequest
from opsconsole.logging import job_run
from opsconsole.paging import parse_limit


class Command(BaseCommand):
    help = (
        "Batch operations from the shell. create: start a batch (items from --items or a file, "
        "one key per line); list: newest batches first; show: one batch and its items; "
        "retry: re-run the failed items of a finished batch; cancel: stop a batch before its next "
        "chunk; recover: release expired item leases and re-queue batches no worker is on "
        "(the every-minute job, for cron)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = sub.add_parser("create", help="create a batch and queue it")
        create.add_argument("--operation", required=True, help="http or backlog")
        create.add_argument(
            "--creator", required=True, help="who the batch is for (at most 100 characters)"
        )
        create.add_argument("--items", help="comma-separated item keys")
        create.add_argument(
            "--items-file", help="a file with one item key per line ('-' for stdin)"
        )
        create.add_argument(
            "--payload",
            default="{}",
            help='the operation payload as JSON, e.g. \'{"url": "https://x/items/{key}"}\'',
        )

        lister = sub.add_parser("list", help="newest batches first")
        lister.add_argument("--creator")
        lister.add_argument("--status")
        lister.add_argument("--limit", default="20", help="1-200 (default 20)")
        lister.add_argument("--cursor", help="next_cursor printed by the previous page")

        show = sub.add_parser("show", help="one batch and its items")
        show.add_argument("batch_id")
        show.add_argument(
            "--items", type=int, default=20, help="how many items to print (default 20)"
        )
        show.add_argument("--json", action="store_true", help="print the API's JSON")

        for name, text in (
            ("retry", "re-run the failed items of a finished batch"),
            ("cancel", "stop a batch before its next chunk"),
        ):
            action = sub.add_parser(name, help=text)
            action.add_argument("batch_id")

        sub.add_parser("recover", help="release expired leases, re-queue batches without a worker")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except BadRequest as exc:
            raise CommandError(str(exc)) from None

    def _create(self, options: dict[str, Any]) -> None:
        keys: list[str] = []
        if options["items"]:
            keys += [k.strip() for k in options["items"].split(",") if k.strip()]
        if options["items_file"]:
            handle = (
                sys.stdin
                if options["items_file"] == "-"
                else open(options["items_file"], encoding="utf-8")
            )
            with handle:
                keys += [line.strip() for line in handle if line.strip()]
        try:
            payload = json.loads(options["payload"])
        except ValueError as exc:
            raise CommandError(f"--payload is not valid JSON: {exc}") from None
        batch = services.create_batch(
            {
                "operation": options["operation"],
                "creator": options["creator"],
                "items": keys,
                "payload": payload,
            }
        )
        self.stdout.write(f"created batch {batch.id}: {batch.total_items} items, {batch.status}")

    def _list(self, options: dict[str, Any]) -> None:
        page = services.list_batches(
            creator=options["creator"],
            status=options["status"],
            limit=parse_limit(options["limit"]),
            cursor=options["cursor"],
        )
        if not page.batches:
            self.stdout.write("no batches")
        for b in page.batches:
            self.stdout.write(
                f"{b.id}  {b.status:<22} {b.operation:<8} "
                f"{b.succeeded_items:>6} ok {b.failed_items:>6} failed "
                f"of {b.total_items:<6} {b.creator}  {b.created_at:%Y-%m-%d %H:%M:%S}"
            )
        if page.next_cursor:
            self.stdout.write(f"more: --cursor {page.next_cursor}")

    def _show(self, options: dict[str, Any]) -> None:
        batch = services.get_batch(options["batch_id"])
        detail = services.batch_detail(batch, max(options["items"], 1))
        if options["json"]:
            self.stdout.write(json.dumps(detail, indent=2))
            return
        for key in (
            "batchId",
            "operation",
            "creator",
            "status",
            "totalItems",
            "succeededItems",
            "failedItems",
            "pendingItems",
            "createdAt",
            "startedAt",
            "finishedAt",
            "error",
        ):
            self.stdout.write(f"{key:<15} {detail[key]}")
        for item in detail["items"]:
            self.stdout.write(
                f"  {item['key']:<30} {item['status']:<10} "
                f"attempts={item['attempts']} {item['error'] or ''}"
            )
        if detail["nextItemsCursor"]:
            self.stdout.write(
                f"  … {batch.total_items - len(detail['items'])} more items (use --items N)"
            )

    def _retry(self, options: dict[str, Any]) -> None:
        batch = services.get_batch(options["batch_id"])
        count = batch.retry_failed()
        if not count:
            raise CommandError(
                f"nothing to retry: batch {batch.id} is {batch.status} "
                f"with {batch.failed_items} failed items"
            )
        self.stdout.write(f"batch {batch.id}: {count} failed items queued again")

    def _cancel(self, options: dict[str, Any]) -> None:
        batch = services.get_batch(options["batch_id"])
        if not batch.cancel():
            raise CommandError(f"batch {batch.id} has already finished ({batch.status})")
        self.stdout.write(
            f"batch {batch.id} cancelled "
            f"({batch.succeeded_items} succeeded, {batch.failed_items} failed)"
        )

    def _recover(self, options: dict[str, Any]) -> None:
        with job_run("batches recover") as job:
            result = recover()
            job.count(**result)
        self.stdout.write(
            f"released {result['released_items']} items with expired leases, "
            f"failed {result['lost_items']} "
            f"(worker lost too often), re-queued {result['requeued_batches']} batches"
        )
