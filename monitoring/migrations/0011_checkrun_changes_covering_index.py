from django.db import migrations, models

# 0008 created checkrun_changes_idx with plain SQL; it is now declared on CheckRun and, on
# PostgreSQL, covers the status so uptime reads the index alone.
OLD_INDEX = (
    "CREATE INDEX IF NOT EXISTS checkrun_changes_idx "
    "ON monitoring_checkrun (check_id, created_at) WHERE status_changed"
)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0010_runner_leases"),
    ]

    operations = [
        migrations.RunSQL("DROP INDEX IF EXISTS checkrun_changes_idx", OLD_INDEX),
        migrations.AddIndex(
            model_name="checkrun",
            index=models.Index(
                condition=models.Q(status_changed=True),
                fields=["check_obj", "created_at"],
                include=["status", "id"],
                name="checkrun_changes_idx",
            ),
        ),
    ]
