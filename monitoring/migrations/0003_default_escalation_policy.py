"""Seeds the escalation policy with the defaults of seed 004 (editable in the admin)."""

from django.db import migrations

DEFAULTS = {
    "critical": {"steps": [(0, []), (1800, [])], "repeat": 900},
    "warning": {"steps": [(3600, [])], "repeat": None},
    "info": {"steps": [], "repeat": None},
}


def seed(apps, schema_editor):
    Policy = apps.get_model("monitoring", "EscalationPolicy")
    Step = apps.get_model("monitoring", "EscalationStep")
    for severity, spec in DEFAULTS.items():
        policy, created = Policy.objects.get_or_create(
            severity=severity, defaults={"repeat_seconds": spec["repeat"]}
        )
        if created:
            for position, (after, channels) in enumerate(spec["steps"]):
                Step.objects.create(
                    policy=policy, position=position, after_seconds=after, channels=channels
                )


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0002_alerts")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
