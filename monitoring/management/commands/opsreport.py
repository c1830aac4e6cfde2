from django.core.management.base import BaseCommand

from monitoring.observability.report import build_report, email_report
from opsconsole.logging import job_run


class Command(BaseCommand):
    help = (
        "Build the health report headed REPORT_TITLE (process status, database health, recent "
        "rows, active alerts, system resources; which checks and queries feed it is the check "
        "file's report: section, see docs/checks.md), save it (see /reports/) and print it. "
        "--email also mails it to every active staff user with an address. "
        "Scheduled every 30 minutes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", action="store_true", help="mail the report to staff users")

    def handle(self, *args, **options):
        with job_run("opsreport") as job:
            report = build_report()
            job.count(report_id=report.pk)
            self.stdout.write(report.text, ending="")
            self.stdout.write(f"Saved report #{report.pk}: {report.title}")
            if options["email"]:
                sent = email_report(report)
                job.count(mailed=sent)
                self.stdout.write(
                    f"Mailed to {sent} staff users."
                    if sent
                    else "Not mailed: no active staff user has an email address."
                )
