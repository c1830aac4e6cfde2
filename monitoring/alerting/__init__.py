"""Alerts, escalation and notifications."""


def setup() -> None:
    """Called from MonitoringConfig.ready: hooks, check-file sections, schedules."""
    from monitoring.activity import register_activity_source
    from monitoring.alerting.lifecycle import after_record
    from monitoring.alerting.metrics import alert_activity, alert_metrics
    from monitoring.alerting.sections import SECTIONS
    from monitoring.checkfile import register_section
    from monitoring.metrics_registry import register_collector
    from monitoring.models import register_after_record
    from opsconsole.schedules import PeriodicJob, register_job

    register_after_record(after_record)
    for section in SECTIONS:
        register_section(section)
    register_job(
        PeriodicJob(
            name="escalate",
            func="monitoring.alerting.escalation.run_escalate",
            minutes=1,
            command="escalate",
            description="Send the due alert notifications, reminders and recovery notices",
        )
    )
    register_activity_source("alerts", alert_activity)
    register_collector("alerts", alert_metrics)
