from django.apps import AppConfig


class OpsConsoleConfig(AppConfig):
    name = "opsconsole"
    verbose_name = "Ops Console"
    default_auto_field = "django.db.models.BigAutoField"
