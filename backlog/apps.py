from django.apps import AppConfig


class BacklogConfig(AppConfig):
    name = "backlog"
    verbose_name = "Backlog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use the models, which Django loads
        # only once every app's config is created.
        from backlog import activity as backlog_activity
        from backlog import (
            kinds,  # noqa: F401 - registers the backlog check kind
            pages,
            retention,
        )
        from backlog.services import activity, collect_metrics
        from opsconsole.registries import (
            PeriodicJob,
            register_activity_source,
            register_collector,
            register_job,
        )

        register_job(
            PeriodicJob(
                name="process-backlog",
                func="backlog.services.process_scheduled",
                minutes=5,
                command="backlog process",
                description="Deliver pending backlog entries to their handlers",
            )
        )
        register_activity_source("backlog", activity, events=backlog_activity.failure_events)
        register_collector("backlog", collect_metrics)
        pages.register_panels()
        retention.register_rules()
