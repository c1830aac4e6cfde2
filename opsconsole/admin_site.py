"""The admin site of the console: the index groups the models the way an operator looks for
them (checks, alerts, channels and escalation, backlog, batches, reports, the task queue)
instead of by the Python app that happens to define them.

Models are named by ``app_label.ModelName`` strings, so this module imports no app; a model
registered later and not named here keeps its app's own group, after the named ones.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest

# (group title, slug used for the group's CSS class, models in the order shown)
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Checks",
        "checks",
        ("monitoring.Check", "monitoring.CheckRun", "monitoring.MaintenanceWindow"),
    ),
    ("Alerts", "alerts", ("monitoring.Alert", "monitoring.AlertEvent")),
    (
        "Channels & escalation",
        "channels",
        (
            "monitoring.NotificationChannel",
            "monitoring.EscalationPolicy",
            "monitoring.Notification",
        ),
    ),
    ("Backlog", "backlog", ("backlog.BacklogEntry",)),
    ("Batches", "batches", ("batches.BatchOperation", "batches.BatchItem")),
    ("Reports", "reports", ("monitoring.Report",)),
    (
        "Task queue",
        "task-queue",
        ("django_q.OrmQ", "django_q.Schedule", "django_q.Failure", "django_q.Success"),
    ),
)


class OpsAdminSite(admin.AdminSite):
    site_header = "Ops Console administration"
    site_title = "Ops Console admin"
    index_title = "Administration"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps  # an app's own index page lists that app's models
        return group_models(apps)


def group_models(apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Django's per-app list regrouped by ``GROUPS``; what no group names stays per app."""
    by_name: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for app in apps:
        for model in app["models"]:
            by_name[f"{app['app_label']}.{model['object_name']}"] = (app, model)
    grouped: list[dict[str, Any]] = []
    placed: set[str] = set()
    for title, slug, names in GROUPS:
        members = [by_name[name] for name in names if name in by_name]
        if not members:
            continue  # the user may see none of them
        placed.update(name for name in names if name in by_name)
        first_app, first_model = members[0]
        grouped.append(
            {
                "name": title,
                "app_label": slug,
                "app_url": first_model.get("admin_url") or first_app["app_url"],
                "has_module_perms": True,
                "models": [model for _, model in members],
            }
        )
    for app in apps:
        rest = [m for m in app["models"] if f"{app['app_label']}.{m['object_name']}" not in placed]
        if rest:
            grouped.append({**app, "models": rest})
    return grouped


class OpsAdminConfig(AdminConfig):
    """``django.contrib.admin`` with the console's site as ``admin.site``."""

    default_site = "opsconsole.admin_site.OpsAdminSite"
