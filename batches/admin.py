"""Admin for batches: read-only result tables built for millions of items."""

from __future__ import annotations

import json
import uuid

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from batches.models import BatchItem, BatchOperation, BatchStatus
from batches.operations import operation_names
from opsconsole.admin_utils import LargeTableAdminMixin, relative_time, status_badge
from opsconsole.page_access import BATCH_CHANGE
from opsconsole.redaction import mask_config

ITEMS_PREVIEW = 50


class RecentCreatorFilter(admin.SimpleListFilter):
    """Creators of the latest batches: a DISTINCT over the whole table would scan it."""

    title = "creator"
    parameter_name = "creator"

    def lookups(self, request, model_admin):
        recent = BatchOperation.objects.order_by("-created_at").values_list("creator", flat=True)[
            :1000
        ]
        return [(c, c) for c in sorted(set(recent))[:50]]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(creator=self.value())
        return queryset


class OperationFilter(admin.SimpleListFilter):
    title = "operation"
    parameter_name = "operation"

    def lookups(self, request, model_admin):
        return [(name, name) for name in operation_names()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(operation=self.value())
        return queryset


@admin.register(BatchOperation)
class BatchOperationAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "short_id",
        "operation",
        "creator",
        "batch_status",
        "progress",
        "created",
    )
    list_filter = ("status", OperationFilter, RecentCreatorFilter)
    search_fields = ("creator",)
    search_help_text = "A batch id, or the start of a creator."
    ordering = ("-created_at", "-id")
    actions = ("retry_failed_items", "cancel_batches")
    readonly_fields = (
        "id",
        "operation",
        "creator",
        "masked_payload",
        "status",
        "progress",
        "total_items",
        "succeeded_items",
        "failed_items",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "items_preview",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The change page is a read-only detail page; the actions have their own right below.
        return False

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Retry and cancel: the model's change permission, which the read-only change page
        above does not grant (the same rule as the Retry and Cancel buttons of the pages)."""
        return request.user.has_perm(BATCH_CHANGE)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            # Prefix match keeps the (creator, created_at) index usable.
            return queryset.filter(creator__startswith=term), False

    @admin.display(description="batch")
    def short_id(self, batch: BatchOperation) -> str:
        # The first 8 characters name a batch for a person; the full id is on its page.
        return format_html('<span title="{}">{}</span>', batch.pk, str(batch.pk)[:8])

    @admin.display(description="status")
    def batch_status(self, batch: BatchOperation) -> str:
        return status_badge(batch.status, batch.get_status_display())

    @admin.display(description="created")
    def created(self, batch: BatchOperation) -> str:
        return relative_time(batch.created_at)

    @admin.display(description="payload (secrets masked)")
    def masked_payload(self, batch: BatchOperation) -> str:
        return format_html("<pre>{}</pre>", json.dumps(mask_config(batch.payload), indent=2))

    @admin.display(description="progress")
    def progress(self, batch: BatchOperation) -> str:
        done = batch.succeeded_items + batch.failed_items
        pct = batch.progress_pct
        # An SVG bar styled by opsconsole/admin.css: the CSP allows no style="" attributes.
        return format_html(
            '<svg class="batch-progress" viewBox="0 0 100 1" preserveAspectRatio="none" '
            'xmlns="http://www.w3.org/2000/svg"><title>{} succeeded, {} failed of {}</title>'
            '<rect class="{}" width="{}" height="1"/></svg> {}/{}',
            batch.succeeded_items,
            batch.failed_items,
            batch.total_items,
            "with-failures" if batch.failed_items else "clean",
            pct,
            done,
            batch.total_items,
        )

    @admin.display(description="items")
    def items_preview(self, batch: BatchOperation) -> str:
        rows = batch.items.order_by("id")[:ITEMS_PREVIEW]
        link = reverse("admin:batches_batchitem_changelist") + f"?batch__id__exact={batch.pk}"
        table = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((item.key, item.status, item.attempts, item.error[:200]) for item in rows),
        )
        return format_html(
            '<p><a href="{}">All {} items, paginated and filterable</a></p>'
            "<table><tr><th>key</th><th>status</th><th>attempts</th><th>error</th></tr>{}</table>",
            link,
            batch.total_items,
            table,
        )

    @admin.action(description="Retry failed items", permissions=["act"])
    def retry_failed_items(self, request: HttpRequest, queryset: QuerySet[BatchOperation]) -> None:
        total = batches = 0
        for batch in queryset[:500]:
            count = batch.retry_failed()
            if count:
                total += count
                batches += 1
        level = messages.SUCCESS if total else messages.WARNING
        self.message_user(
            request, f"{total} failed items of {batches} batches queued again.", level
        )

    @admin.action(description="Cancel", permissions=["act"])
    def cancel_batches(self, request: HttpRequest, queryset: QuerySet[BatchOperation]) -> None:
        cancelled = sum(
            1
            for batch in queryset.filter(status__in=(BatchStatus.PENDING, BatchStatus.RUNNING))[
                :500
            ]
            if batch.cancel()
        )
        self.message_user(
            request,
            f"{cancelled} batches cancelled.",
            messages.SUCCESS if cancelled else messages.WARNING,
        )


@admin.register(BatchItem)
class BatchItemAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "key",
        "batch_link",
        "item_status",
        "attempts",
        "short_error",
        "updated",
    )
    list_filter = ("status",)
    list_select_related = ("batch",)
    search_fields = ("=key",)
    ordering = ("-id",)
    readonly_fields = (
        "batch",
        "key",
        "status",
        "attempts",
        "result",
        "error",
        "lease_until",
        "claim_token",
        "next_attempt_at",
        "updated_at",
        "finished_at",
    )
    fields = readonly_fields
    raw_id_fields = ("batch",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="batch")
    def batch_link(self, item: BatchItem) -> str:
        url = reverse("admin:batches_batchoperation_change", args=[item.batch_id])
        return format_html('<a href="{}">{}</a>', url, str(item.batch_id)[:8])

    @admin.display(description="error")
    def short_error(self, item: BatchItem) -> str:
        return item.error[:80]

    @admin.display(description="status")
    def item_status(self, item: BatchItem) -> str:
        return status_badge(item.status)

    @admin.display(description="updated")
    def updated(self, item: BatchItem) -> str:
        return relative_time(item.updated_at)
