from django.apps import AppConfig


class BacklogConfig(AppConfig):
    name = "backlog"
    default_auto_field = "django.db.models.BigAutoField"
