"""Admin for alerts, their timeline, channels, the escalation policy and maintenance windows."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from monitoring.alerts.delivery import send_test
from monitoring.models import (
    Alert,
    AlertEvent,
    EscalationPolicy,
    EscalationStep,
    MaintenanceWindow,
    Notification,
    NotificationChannel,
    Report,
)
from opsconsole.admin_utils import LargeTableAdminMixin, relative_time, status_badge
from opsconsole.redaction import MASK


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "actor", "channel", "outcome", "message")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    max_num = 0


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    # Columns that fit a laptop screen beside the filters; the timeline is on the alert.
    list_display = (
        "id",
        "title",
        "severity_badge",
        "status_badge",
        "opened",
        "acknowledged_by",
    )
    list_filter = ("status", "severity", "flapping")
    search_fields = ("title", "dedup_key")
    list_select_related = ("check_obj",)
    raw_id_fields = ("check_obj",)
    ordering = ("-opened_at", "-id")
    actions = ("acknowledge_selected", "resolve_selected")
    readonly_fields = (
        "dedup_key",
        "check_obj",
        "opened_at",
        "last_seen_at",
        "escalation_started_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
        "occurrences",
        "status",
        "severity",
        "flapping",
    )
    inlines = [AlertEventInline]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Severity", ordering="severity")
    def severity_badge(self, alert: Alert) -> str:
        # A resolved alert is not shown in its severity's red any more: the word, uncoloured.
        if alert.status == "resolved":
            return format_html('<span class="severity-was">{}</span>', alert.severity)
        return status_badge(alert.severity)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, alert: Alert) -> str:
        return status_badge(alert.status)

    @admin.display(description="Opened", ordering="opened_at")
    def opened(self, alert: Alert) -> str:
        return relative_time(alert.opened_at)

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge_selected(self, request, queryset):
        done = sum(
            alert.acknowledge(request.user.get_username(), via="admin") for alert in queryset[:500]
        )
        self.message_user(request, f"Acknowledged {done} alerts.", messages.SUCCESS)

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve_selected(self, request, queryset):
        done = sum(
            alert.resolve(request.user.get_username(), "Resolved in the admin")
            for alert in queryset[:500]
        )
        self.message_user(request, f"Resolved {done} alerts.", messages.SUCCESS)


@admin.register(AlertEvent)
class AlertEventAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = ("created", "alert", "kind", "actor", "outcome", "message_short")
    list_filter = ("kind", "outcome")
    list_select_related = ("alert",)
    raw_id_fields = ("alert",)
    ordering = ("-created_at", "-id")
    # Filter by alert instead of searching millions of rows: ?alert__id__exact=ID

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="When", ordering="created_at")
    def created(self, event: AlertEvent) -> str:
        return relative_time(event.created_at)

    @admin.display(description="Message")
    def message_short(self, event: AlertEvent) -> str:
        return event.message[:100]


@admin.register(Notification)
class NotificationAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "created",
        "alert",
        "channel",
        "notification_status",
        "next_attempt",
        "short_error",
    )
    list_filter = ("status", "purpose", "step_kind", "step_severity")
    list_select_related = ("alert", "channel")
    raw_id_fields = ("alert",)
    ordering = ("-created_at", "-id")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Created", ordering="created_at")
    def created(self, notification: Notification) -> str:
        return relative_time(notification.created_at)

    @admin.display(description="Status", ordering="status")
    def notification_status(self, notification: Notification) -> str:
        return status_badge(notification.status)

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, notification: Notification) -> str:
        if notification.status not in ("pending", "sending"):
            return "—"
        return relative_time(notification.next_attempt_at)

    @admin.display(description="Last error")
    def short_error(self, notification: Notification) -> str:
        return notification.last_error[:80]


class NotificationChannelForm(forms.ModelForm):
    """Shows the webhook URL masked and keeps the stored one when the mask comes back as is."""

    class Meta:
        model = NotificationChannel
        fields = ("name", "kind", "url", "recipients", "min_severity", "enabled")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.url:
            self.initial["url"] = self.instance.masked_url

    def clean_url(self) -> str:
        url = self.cleaned_data.get("url") or ""
        if self.instance.pk and self.instance.url and url == self.instance.masked_url:
            return self.instance.url
        if MASK in url:
            raise forms.ValidationError(
                f"the URL still shows {MASK} where a secret was; paste the whole URL to change it"
            )
        return url


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ("name", "kind", "min_severity", "enabled", "masked_url", "recipients")
    list_filter = ("kind", "enabled", "min_severity")
    search_fields = ("name",)
    actions = ["send_test_notification"]

    @admin.action(description="Send test notification", permissions=["change"])
    def send_test_notification(self, request, queryset):
        for channel in queryset[:50]:
            error = send_test(channel, request.user.get_username(), "the admin")
            if error is None:
                self.message_user(request, f"{channel.name}: test notification sent.")
            else:
                self.message_user(
                    request, f"{channel.name}: test notification failed: {error}", messages.ERROR
                )


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    extra = 1
    fields = ("position", "after_seconds", "channels")


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ("severity", "repeat_seconds")
    inlines = [EscalationStepInline]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ("name", "check_obj", "component", "source", "starts_at", "ends_at")
    raw_id_fields = ("check_obj",)
    list_select_related = ("check_obj",)
    ordering = ("-starts_at",)


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """Saved health reports, read-only: ``opsreport`` writes them; the page shows them whole."""

    list_display = ("title", "report_status", "created", "page_link")
    list_filter = ("overall_status",)
    ordering = ("-created_at",)
    fields = ("title", "overall_status", "created_at", "text")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Status", ordering="overall_status")
    def report_status(self, report: Report) -> str:
        return status_badge(report.overall_status)

    @admin.display(description="Created", ordering="created_at")
    def created(self, report: Report) -> str:
        return relative_time(report.created_at)

    @admin.display(description="Page")
    def page_link(self, report: Report) -> str:
        return format_html('<a href="{}">open</a>', reverse("report-detail", args=[report.pk]))
