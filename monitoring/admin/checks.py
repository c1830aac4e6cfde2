"""Admin for checks and their runs."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.utils.html import format_html

from monitoring.checks.baseline import rule_problems
from monitoring.checks.runner import run_checks
from monitoring.kinds import CheckKind, ConfigError, get_kind, kind_names, mask_secrets
from monitoring.models import Check, CheckRun, CheckStatus, can_author_sql
from opsconsole.admin_utils import LargeTableAdminMixin, relative_time, status_badge
from opsconsole.redaction import MASK, holds_mask, mask_config, restore_masked


class CheckForm(forms.ModelForm):
    """The same validation as a check file: the kind checks its own config."""

    class Meta:
        model = Check
        fields = [
            f.name
            for f in Check._meta.get_fields()
            if f.concrete and f.editable and not f.auto_created
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The form shows secrets masked; clean() puts the stored ones back where the mask
        # comes back unchanged.
        if self.instance.pk and isinstance(self.instance.config, dict):
            self.initial["config"] = mask_config(self.instance.config)

    def clean_config(self):
        config = self.cleaned_data.get("config")
        if self.instance.pk and isinstance(config, dict):
            config = restore_masked(config, self.instance.config)
        if holds_mask(config):
            raise forms.ValidationError(
                f"a secret is still shown as {MASK}; type the whole value again to change it"
            )
        return config

    def clean(self):
        cleaned = super().clean()
        try:
            kind = get_kind(cleaned.get("kind") or "")
        except ConfigError:
            self.add_error("kind", f"unknown kind; known kinds: {', '.join(kind_names())}")
            return cleaned
        config = cleaned.get("config")
        if not isinstance(config, dict):
            self.add_error("config", "must be a JSON object")
            return cleaned
        try:
            cleaned["config"] = kind.validate_config(config)
        except ConfigError as exc:
            self.add_error("config", "; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
            return cleaned
        if self._refuse_unpermitted_sql(kind, cleaned["config"]):
            return cleaned
        if cleaned.get("baseline") is not None:
            for key, text in rule_problems(cleaned["baseline"]).items():
                self.add_error("baseline", f"{key}: {text}")
        default_warn, default_crit, default_direction = kind.default_thresholds(cleaned["config"])
        warn = cleaned.get("warn") if cleaned.get("warn") is not None else default_warn
        crit = cleaned.get("crit") if cleaned.get("crit") is not None else default_crit
        below = (cleaned.get("direction") or default_direction) == "below"
        if warn is not None and crit is not None and (warn < crit if below else warn > crit):
            self.add_error("warn", f"warn {warn:g} is beyond crit {crit:g}")
        return cleaned

    def _refuse_unpermitted_sql(self, kind: CheckKind, config: dict) -> bool:
        """A query or DSN runs with the console's database access: only superusers and holders
        of ``monitoring.author_sql_checks`` may add or change one (save-as-new included).
        True when refused."""
        authored = kind.authored_sql(config)
        if authored is None or can_author_sql(self.user):
            return False
        stored = self.instance
        if stored.pk and stored.kind == kind.name and stored.authored_sql() == authored:
            return False  # unchanged: editing a check's other fields stays open to its editors
        self.add_error(
            "config",
            "Only superusers or users with the permission 'Can author SQL checks' may set or "
            "change a query (sql) or a database DSN; ask one of them to make this change.",
        )
        return True


@admin.register(Check)
class CheckAdmin(admin.ModelAdmin):
    form = CheckForm

    # Columns that fit a laptop screen beside the filters; the message is on the check page.
    list_display = (
        "name",
        "status_badge",
        "component",
        "kind",
        "last_value",
        "last_run",
        "enabled",
    )
    list_filter = ("status", "kind", "component", "enabled")
    search_fields = ("name", "component")
    list_select_related = ("depends_on",)
    actions = ("run_now", "enable", "disable", "reset_baseline")
    readonly_fields = (
        "status",
        "last_value",
        "last_message",
        "last_run_at",
        "status_changed_at",
        "next_run_at",
        "baseline_since",
        "ping_url",
        "masked_config",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "kind", "component", "description", "enabled")}),
        (
            "Probe",
            {
                "fields": (
                    "config",
                    "masked_config",
                    "interval_seconds",
                    "timeout_seconds",
                    "ping_url",
                )
            },
        ),
        (
            "Thresholds",
            {
                "fields": (
                    "warn",
                    "crit",
                    "direction",
                    "debounce",
                    "baseline",
                    "baseline_since",
                    "startup_grace_seconds",
                    "depends_on",
                )
            },
        ),
        (
            "State",
            {
                "fields": (
                    "status",
                    "last_value",
                    "last_message",
                    "last_run_at",
                    "status_changed_at",
                    "next_run_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        # The fields of the form only: the check's runtime state was read with the form and
        # may have moved since (a run recorded, a runner's lease taken); writing it back would
        # undo a recorded status or cost a claimed slot its run.
        obj.save_config([name for name in form.fields if name in Check.CONFIG_FIELDS])

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user  # the form's SQL-authoring rule depends on who submits it
        return form

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Check) -> str:
        return status_badge(obj.status)

    @admin.display(description="Last run", ordering="last_run_at")
    def last_run(self, obj: Check) -> str:
        return relative_time(obj.last_run_at)

    @admin.display(description="Message")
    def last_message_short(self, obj: Check) -> str:
        return obj.last_message[:120]

    @admin.display(description="Ping URL")
    def ping_url(self, obj: Check) -> str:
        if obj.pk and obj.kind_impl.pushed:
            return f"{settings.SITE_URL}{obj.ping_path()}"
        return "—"

    @admin.display(description="Config (secrets masked)")
    def masked_config(self, obj: Check) -> str:
        return format_html("<pre>{}</pre>", json.dumps(mask_secrets(obj.config), indent=2))

    @admin.action(description="Run now", permissions=["change"])
    def run_now(self, request, queryset):
        results = run_checks(list(queryset[:200]), claim=False)
        for result in results:
            if result.run is None:
                self.message_user(request, f"{result.check.name}: {result.error}", messages.ERROR)
                continue
            level = messages.SUCCESS if result.run.status == CheckStatus.OK else messages.WARNING
            self.message_user(
                request, f"{result.check.name}: {result.run.status} {result.run.message}", level
            )

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request, queryset):
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} checks.")

    @admin.action(
        description="Reset baseline (the current level becomes normal)", permissions=["change"]
    )
    def reset_baseline(self, request, queryset):
        actor = request.user.get_username()
        for check in queryset.filter(baseline__isnull=False)[:1000]:
            where = check.reset_baseline(actor)
            self.message_user(request, f"{check.name}: baseline reset (logged on {where}).")
        if not queryset.filter(baseline__isnull=False).exists():
            self.message_user(
                request, "None of these checks has a baseline rule.", messages.WARNING
            )

    @admin.action(description="Disable (pause)", permissions=["change"])
    def disable(self, request, queryset):
        # Saved one by one, not queryset.update(): the save is what resolves the checks'
        # open alerts (monitoring.alerts.lifecycle), so a paused check stops paging.
        disabled = 0
        for check in queryset[:1000]:
            check.enabled, check.status = False, CheckStatus.PAUSED
            check.stop_reason = f"Check disabled by admin ({request.user.get_username()})"
            check.save(update_fields=["enabled", "status", "updated_at"])
            disabled += 1
        self.message_user(request, f"Disabled {disabled} checks.")


@admin.register(CheckRun)
class CheckRunAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = ("created", "check_obj", "run_status", "value", "duration_ms", "message_short")
    list_filter = ("status",)
    list_select_related = ("check_obj",)
    raw_id_fields = ("check_obj",)
    date_hierarchy = None
    ordering = ("-created_at",)
    # A search over millions of rows would be a full scan; filter by check instead:
    # /admin/monitoring/checkrun/?check_obj__id__exact=ID

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.display(description="When", ordering="created_at")
    def created(self, obj: CheckRun) -> str:
        return relative_time(obj.created_at)

    @admin.display(description="Status", ordering="status")
    def run_status(self, obj: CheckRun) -> str:
        return status_badge(obj.status)

    @admin.display(description="Message")
    def message_short(self, obj: CheckRun) -> str:
        return obj.message[:80]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
