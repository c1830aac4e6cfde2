from django.core.management.base import BaseCommand

from monitoring.observability.report import build_report, email_report
from opsconsole.logging import job_context


class Command(BaseCommand):
    help = (
        "Build the health report (process status, database health, recent data from freshness and "
        "value checks, active alerts, system resources), save it (see /reports/) and print it. "
        "--email also mails it to every active staff user with an address. "
        "Scheduled every 30 minutes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", action="store_true", help="mail the report to staff users")

    def handle(self, *args, **options):
        with job_context(job_name="opsreport"):
            report = build_report()
            self.stdout.write(report.text, ending="")
            self.stdout.write(f"Saved report #{report.pk}: {report.title}")
            if options["email"]:
                sent = email_report(report)
                self.stdout.write(
                    f"Mailed to {sent} staff users."
                    if sent
                    else "Not mailed: no active staff user has an email address."
                )
