"""The monitoring app's admin: checks and runs; alerts, channels, escalation, maintenance;
saved reports."""

from monitoring.admin import alerts, checks

__all__ = ["alerts", "checks"]
