import sys

from django.core.management.base import BaseCommand

from monitoring.observability.health import CRITICAL, LEVEL_RANK, OK, WARNING, findings, overall
from monitoring.observability.snapshot import collect_families, render_families
from opsconsole.logging import JobTrail, job_run

_MARK = {OK: "OK  ", WARNING: "WARN", CRITICAL: "CRIT"}


class Command(BaseCommand):
    help = (
        "Operational metrics from the database. "
        "'summary' (default): a readable table of every metric /metrics exports. "
        "'prometheus': the Prometheus exposition text. "
        "'health': the health table (queue failed jobs, job error rate, queue backlog, Redis, "
        "checks, scheduler) with what to do about each finding; "
        "exits 0 healthy, 1 warning, 2 critical."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "view", nargs="?", default="summary", choices=("summary", "prometheus", "health")
        )

    def handle(self, *args, **options):
        getattr(self, f"_{options['view']}")()

    def _prometheus(self) -> None:
        self.stdout.write(render_families(collect_families()), ending="")

    def _summary(self) -> None:
        families = collect_families()
        rows: list[tuple[str, str, str]] = []
        for family in families:
            if family.name == "opsconsole_collector_errors":
                continue
            samples = [s for s in family.samples if not s.name.endswith(("_bucket", "_created"))]
            for sample in samples:
                labels = ", ".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                rows.append((sample.name, labels, f"{sample.value:g}"))
            if not samples:
                rows.append((family.name, "", "(no data)"))
        failed = [
            s.labels["collector"]
            for f in families
            if f.name == "opsconsole_collector_errors"
            for s in f.samples
            if s.value
        ]
        name_w = max((len(r[0]) for r in rows), default=10)
        label_w = min(60, max((len(r[1]) for r in rows), default=6))
        self.stdout.write(f"{'METRIC':<{name_w}}  {'LABELS':<{label_w}}  VALUE")
        previous = ""
        for name, labels, value in rows:
            shown = name if name != previous else ""
            previous = name
            self.stdout.write(f"{shown:<{name_w}}  {labels:<{label_w}}  {value}")
        if failed:
            self.stderr.write(f"Collectors that failed (see the log): {', '.join(failed)}")

    def _health(self) -> None:
        # The one view cron runs: it leaves a start and a finish line (with its exit code).
        with job_run("metrics health") as job:
            self._health_table(job)

    def _health_table(self, job: JobTrail) -> None:
        items = findings()
        width = max(len(f.name) for f in items)
        for f in items:
            self.stdout.write(f"[{_MARK[f.level]}] {f.name:<{width}}  {f.value}: {f.message}")
            if f.action:
                self.stdout.write(f"       {'':<{width}}  → {f.action}")
        level = overall(items)
        counts = {lvl: sum(1 for f in items if f.level == lvl) for lvl in (WARNING, CRITICAL)}
        self.stdout.write(
            f"Overall: {level.upper()} ({counts[CRITICAL]} critical, {counts[WARNING]} warning)"
        )
        job.count(level=level, critical=counts[CRITICAL], warning=counts[WARNING])
        sys.exit(LEVEL_RANK[level])
