from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from monitoring import alerting, observability
        from monitoring.kinds import data, host, network  # noqa: F401 - registers the kinds
        from opsconsole.schedules import PeriodicJob, register_job

        register_job(
            PeriodicJob(
                name="run-due-checks",
                func="monitoring.probing.run_due_checks",
                minutes=1,
                command="runchecks",
                description="Run the checks that are due",
            )
        )
        alerting.setup()
        observability.setup()
