"""Staff pages of the monitoring app: checks, activity, reports."""
