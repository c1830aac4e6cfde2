from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from backlog import services
from backlog.models import BacklogEntry
from opsconsole.admin_utils import LargeTableAdminMixin


@admin.register(BacklogEntry)
class BacklogEntryAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "key",
        "source",
        "status",
        "attempts",
        "reason",
        "created_at",
        "processed_at",
        "next_attempt_at",
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

    def get_readonly_fields(self, request: HttpRequest, obj: BacklogEntry | None = None):
        # Identity is fixed once queued: editing it would dodge the one-pending-per-key rule.
        if obj is not None:
            return ("source", "key", *self.readonly_fields)
        return self.readonly_fields

    @admin.action(description="Requeue selected entries (failed or processed → pending)")
    def requeue(self, request: HttpRequest, queryset: QuerySet[BacklogEntry]) -> None:
        requeued, skipped = services.requeue(queryset)
        self.message_user(request, f"Requeued {requeued} entries.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped}: being processed, or their key is already pending.",
                messages.WARNING,
            )

    @admin.action(description="Mark selected entries processed")
    def mark_processed(self, request: HttpRequest, queryset: QuerySet[BacklogEntry]) -> None:
        count = services.mark_processed(queryset)
        self.message_user(request, f"Marked {count} entries processed.", messages.SUCCESS)
