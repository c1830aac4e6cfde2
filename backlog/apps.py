from django.apps import AppConfig


class BacklogConfig(AppConfig):
    name = "backlog"
    verbose_name = "Backlog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from backlog import kinds  # noqa: F401 - registers the backlog check kind
        from backlog.services import activity, collect_metrics
        from monitoring.activity import register_activity_source
        from monitoring.metrics_registry import register_collector
        from opsconsole.schedules import PeriodicJob, register_job

        register_job(
            PeriodicJob(
                name="process-backlog",
                func="backlog.services.process_scheduled",
                minutes=5,
                command="backlog process",
                description="Deliver pending backlog entries to their handlers",
            )
        )
        register_activity_source("backlog", activity)
        register_collector("backlog", collect_metrics)
