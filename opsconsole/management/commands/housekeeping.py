from django.core.management.base import BaseCommand

from opsconsole.housekeeping import RuleResult, run_housekeeping
from opsconsole.logging import job_run


class Command(BaseCommand):
    help = (
        "Delete data past its retention: check runs (CHECKRUN_RETENTION_DAYS, always keeping the "
        "last CHECKRUN_KEEP_LAST runs and every status change per check), resolved alerts, "
        "processed backlog entries, finished batches with their items, django-q2 task results "
        "and health reports. Deletes in short transactions; safe to run while everything else "
        "runs. Scheduled daily by setup_schedules."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be removed and remove nothing"
        )

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        verb = "would remove" if dry_run else "removed"

        def show(result: RuleResult) -> None:
            line = f"{result.name:<27} {verb} {result.removed:>9}  ({result.rule})"
            if result.transactions:
                longest = result.longest_seconds * 1000
                line += f"  [{result.transactions} transactions, longest {longest:.0f} ms]"
            self.stdout.write(line)

        with job_run("housekeeping", mode="dry-run" if dry_run else "delete") as job:
            outcome = run_housekeeping(dry_run=dry_run, progress=show)
            job.count(removed=outcome.removed)
        self.stdout.write(
            f"{'Dry run: would remove' if dry_run else 'Removed'} {outcome.removed} rows in total"
            + ("" if dry_run else f"; longest transaction {outcome.longest_seconds * 1000:.0f} ms")
        )
