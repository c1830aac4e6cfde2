"""Notification steps as data: kind, severity and number instead of a key parsed back.

Existing rows are converted from their key (``critical:s1``, ``critical:r2``, ``recovery``);
the unique constraint moves from the key to the three fields, so a pass planning a step that
an earlier pass planned as a key still makes no second row.
"""

import re

from django.db import migrations, models

# The only shapes a key ever had: "<severity>:s<step>", "<severity>:r<reminder>", "recovery".
KEY = re.compile(r"^(?P<severity>[a-z]+):(?P<letter>[sr])(?P<number>\d+)$")


def fields_from_key(apps, schema_editor) -> None:
    Notification = apps.get_model("monitoring", "Notification")
    # One UPDATE per distinct key: a few dozen at most, whatever the number of rows.
    keys = Notification.objects.order_by().values_list("step_key", flat=True).distinct()
    for key in list(keys):
        if key == "recovery":
            fields = {"step_kind": "recovery", "step_severity": "", "step_number": 0}
        else:
            match = KEY.match(key)
            if match is None:
                raise ValueError(f"notification step key {key!r} has no known shape")
            fields = {
                "step_kind": "reminder" if match["letter"] == "r" else "escalation",
                "step_severity": match["severity"],
                "step_number": int(match["number"]),
            }
        Notification.objects.filter(step_key=key).update(**fields)


def key_from_fields(apps, schema_editor) -> None:
    Notification = apps.get_model("monitoring", "Notification")
    steps = (
        Notification.objects.order_by()
        .values_list("step_kind", "step_severity", "step_number")
        .distinct()
    )
    for kind, severity, number in list(steps):
        if kind == "recovery":
            key = "recovery"
        else:
            key = f"{severity}:{'r' if kind == 'reminder' else 's'}{number}"
        Notification.objects.filter(
            step_kind=kind, step_severity=severity, step_number=number
        ).update(step_key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0004_sql_check_permission"),
    ]

    # Ordered so that it also runs backwards: the old constraint goes first (and comes back
    # last), and the key gets a default so that it can be added back to existing rows before
    # the reverse data step fills it.
    operations = [
        migrations.RemoveConstraint(
            model_name="notification",
            name="notification_once_per_step",
        ),
        migrations.AddField(
            model_name="notification",
            name="step_kind",
            field=models.CharField(
                choices=[
                    ("escalation", "Escalation step"),
                    ("reminder", "Reminder"),
                    ("recovery", "Recovery notice"),
                ],
                default="escalation",
                max_length=10,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="notification",
            name="step_severity",
            field=models.CharField(
                blank=True,
                choices=[("info", "Info"), ("warning", "Warning"), ("critical", "Critical")],
                default="",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="notification",
            name="step_number",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="notification",
            name="step_key",
            field=models.CharField(default="", max_length=40),
        ),
        migrations.RunPython(fields_from_key, key_from_fields),
        migrations.RemoveField(
            model_name="notification",
            name="step_key",
        ),
        migrations.AddConstraint(
            model_name="notification",
            constraint=models.UniqueConstraint(
                fields=("alert", "channel", "step_kind", "step_severity", "step_number"),
                name="notification_once_per_step",
            ),
        ),
    ]
