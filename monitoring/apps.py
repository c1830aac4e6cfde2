from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use the models, which Django loads
        # only once every app's config is created.
        from monitoring import retention
        from monitoring.alerts.lifecycle import after_record, connect_check_signals
        from monitoring.alerts.metrics import alert_activity, alert_metrics
        from monitoring.alerts.sections import SECTIONS
        from monitoring.checks import runner
        from monitoring.checks.checkfile import register_section
        from monitoring.kinds import data, heartbeat, host, logfile, network, queue  # noqa: F401 - registers the kinds
        from monitoring.models import register_after_record
        from monitoring.observability import activity, collectors, tasklog
        from monitoring.web import dashboard
        from opsconsole.logging import install_record_factory
        from opsconsole.registries import (
            PeriodicJob,
            register_activity_source,
            register_collector,
            register_job,
        )

        register_after_record(after_record)
        connect_check_signals()
        for section in SECTIONS:
            register_section(section)
        register_collector("checks", collectors.check_metrics)
        register_collector("queue", collectors.queue_metrics)
        register_collector("redis", collectors.redis_metrics)
        register_collector("alerts", alert_metrics)
        register_activity_source("alerts", alert_activity, events=activity.alert_events)
        dashboard.register_panels()
        runner.register_panels()
        retention.register_rules()
        install_record_factory()
        tasklog.connect()
        for job in (
            PeriodicJob(
                name="run-due-checks",
                func="monitoring.checks.runner.run_due_checks",
                minutes=1,
                command="runchecks",
                description="Run the checks that are due",
            ),
            PeriodicJob(
                name="escalate",
                func="monitoring.alerts.escalation.run_escalate",
                minutes=1,
                command="escalate",
                description="Send the due alert notifications, reminders and recovery notices",
            ),
            PeriodicJob(
                name="rollups",
                func="monitoring.history.rollups.scheduled_rollups",
                minutes=1,
                command="rollups",
                description="Summarise the latest check runs into 5-minute and hourly rollups",
            ),
            PeriodicJob(
                name="housekeeping",
                func="opsconsole.housekeeping.scheduled_housekeeping",
                minutes=24 * 60,
                command="housekeeping",
                description="Delete data past its retention (runs, alerts, backlog, batches, tasks)",
            ),
            PeriodicJob(
                name="opsreport",
                func="monitoring.observability.report.scheduled_report",
                minutes=30,
                command="opsreport",
                description="Save the 30-minute health report (mailed when OPSREPORT_EMAIL is on)",
            ),
        ):
            register_job(job)
