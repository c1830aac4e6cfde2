from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backlog import services
from backlog.models import BacklogEntry
from opsconsole.admin_utils import LargeTableAdminMixin, relative_time, status_badge
from opsconsole.redaction import MASK, holds_mask, mask_config, restore_masked


class BacklogEntryForm(forms.ModelForm):
    """Shows the payload with secrets masked; a mask that comes back unchanged keeps the stored
    secret, one edited around is refused rather than stored as ``***``."""

    class Meta:
        model = BacklogEntry
        fields = ("source", "key", "reason", "payload")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and isinstance(self.instance.payload, dict):
            self.initial["payload"] = mask_config(self.instance.payload)

    def clean_payload(self):
        payload = self.cleaned_data.get("payload")
        if self.instance.pk:
            payload = restore_masked(payload, self.instance.payload)
        if holds_mask(payload):
            raise forms.ValidationError(
                f"a secret is still shown as {MASK}; type the whole value again to change it"
            )
        return payload


@admin.register(BacklogEntry)
class BacklogEntryAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    form = BacklogEntryForm
    # Columns that fit a laptop screen beside the filters; the rest is on the entry's page.
    list_display = (
        "key",
        "source",
        "entry_status",
        "attempts",
        "created",
        "next_attempt",
        "short_error",
    )
    list_filter = ("status", "source")
    # Exact match: served by the (key, source) index on any table size.
    search_fields = ("=key",)
    search_help_text = "Exact key"
    ordering = ("-id",)
    actions = ("requeue", "mark_processed")
    readonly_fields = (
        "status",
        "attempts",
        "last_error",
        "created_at",
        "updated_at",
        "processed_at",
        "next_attempt_at",
        "claim_token",
        "claimed_at",
    )
    fields = ("source", "key", "reason", "payload", *readonly_fields)

    @admin.display(description="last error")
    def short_error(self, entry: BacklogEntry) -> str:
        return entry.last_error[:80]

    @admin.display(description="status")
    def entry_status(self, entry: BacklogEntry) -> str:
        return status_badge(entry.status)

    @admin.display(description="created")
    def created(self, entry: BacklogEntry) -> str:
        return relative_time(entry.created_at)

    @admin.display(description="next attempt")
    def next_attempt(self, entry: BacklogEntry) -> str:
        if entry.status != "pending":
            return "—"
        return relative_time(entry.next_attempt_at)

    def get_readonly_fields(self, request: HttpRequest, obj: BacklogEntry | None = None):
        # Identity is fixed once queued: editing it would dodge the one-pending-per-key rule.
        if obj is not None:
            return ("source", "key", *self.readonly_fields)
        return self.readonly_fields

    @admin.action(
        description="Requeue selected entries (failed or processed → pending)",
        permissions=["change"],
    )
    def requeue(self, request: HttpRequest, queryset: QuerySet[BacklogEntry]) -> None:
        requeued, skipped = services.requeue(queryset)
        self.message_user(request, f"Requeued {requeued} entries.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped}: being processed, or their key is already pending.",
                messages.WARNING,
            )

    @admin.action(description="Mark selected entries processed", permissions=["change"])
    def mark_processed(self, request: HttpRequest, queryset: QuerySet[BacklogEntry]) -> None:
        count = services.mark_processed(queryset)
        self.message_user(request, f"Marked {count} entries processed.", messages.SUCCESS)
