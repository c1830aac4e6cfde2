from django.apps import AppConfig


class OpsConsoleConfig(AppConfig):
    name = "opsconsole"
    verbose_name = "Ops Console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: housekeeping uses the models, which Django loads only
        # once every app's config is created.
        from opsconsole import housekeeping

        housekeeping.register_rules()
