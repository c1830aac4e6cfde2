from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from monitoring.history.rollups import refresh_rollups
from opsconsole.env import parse_duration
from opsconsole.logging import job_run


class Command(BaseCommand):
    help = (
        "Recompute the check history rollups (5-minute and hourly buckets per check) from the "
        "raw runs: by default the current and the previous 5-minute bucket and their hours, "
        "which is what the every-minute schedule does. --since recomputes further back (after "
        "an upgrade, or a scheduler that was down), at most CHECKRUN_RETENTION_DAYS: older "
        "buckets summarise runs that housekeeping has deleted, and stay as they are. Idempotent: "
        "safe to run beside the schedule or twice."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            metavar="DURATION",
            help="recompute the buckets of this long ago until now, e.g. 6h or 2d",
        )

    def handle(self, *args, **options):
        now = timezone.now()
        since = None
        if options["since"]:
            try:
                since = now - timedelta(seconds=parse_duration(options["since"]))
            except ValueError as exc:
                raise CommandError(f"--since: {exc}") from None
        with job_run("rollups") as job:
            result = refresh_rollups(now=now, since=since)
            job.count(
                five_minute_buckets=result.five_minute_buckets,
                hourly_buckets=result.hourly_buckets,
            )
        self.stdout.write(
            f"Rollups: {result.five_minute_buckets} 5-minute and {result.hourly_buckets} hourly "
            f"buckets written in {result.seconds:.2f} s"
        )
