"""Alerts: lifecycle from check runs, the escalation policy and its steps, delivery to
channels, signed acknowledge links and the escalation report."""
