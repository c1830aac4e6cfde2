import yaml
from django.core.management.base import BaseCommand

from monitoring.observability.rules import rules


class Command(BaseCommand):
    help = (
        "Print Prometheus alerting rules (YAML) for the metrics the console exports on /metrics: "
        "batch failure rate, slow batches, pending batches, critical checks, stalled monitoring, "
        "unacknowledged alerts, Redis down and queue backlog. "
        "Save it as a rule file: manage.py prometheus_rules > opsconsole-rules.yml"
    )

    def handle(self, *args, **options):
        self.stdout.write(
            "# Prometheus alerting rules for Ops Console (manage.py prometheus_rules)"
        )
        self.stdout.write(yaml.safe_dump(rules(), sort_keys=False, width=120), ending="")
