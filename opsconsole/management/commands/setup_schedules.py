from django.core.management.base import BaseCommand
from django.utils import timezone
from django_q.models import Schedule

from opsconsole.registries import periodic_jobs


class Command(BaseCommand):
    help = (
        "Install or update the django-q2 schedules of every periodic job (idempotent: run it "
        "after each deploy). Missed runs are not caught up after downtime."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--list", action="store_true", help="print the jobs and their cron equivalents"
        )

    def handle(self, *args, **options):
        jobs = periodic_jobs()
        if options["list"]:
            for job in jobs:
                self.stdout.write(
                    f"{job.name:<22} every {job.minutes:>4} min  manage.py {job.command:<28} {job.description}"
                )
            return
        for job in jobs:
            # One schedule per job name: duplicates would double the work (and the claims in
            # the database make that harmless, but wasteful).
            existing = Schedule.objects.filter(name=job.name).order_by("id")
            for duplicate in existing[1:]:
                duplicate.delete()
            schedule = existing.first()
            values = {
                "func": job.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": job.minutes,
                "repeats": -1,
            }
            if schedule is None:
                Schedule.objects.create(name=job.name, next_run=timezone.now(), **values)
                verb = "created"
            elif any(getattr(schedule, k) != v for k, v in values.items()):
                for key, value in values.items():
                    setattr(schedule, key, value)
                schedule.save()
                verb = "updated"
            else:
                verb = "unchanged"
            self.stdout.write(f"{verb:<9} {job.name} (every {job.minutes} min: {job.func})")
