"""Admin helpers for tables with millions of rows.

A stock changelist runs ``COUNT(*)`` twice per page (filtered and unfiltered), lets any
column header sort the whole table, and pages with OFFSET. On a table of runs or items that
is seconds per click. ``LargeTableAdminMixin`` keeps every changelist query bounded:

- counts come from ``EstimatedCountPaginator``: the planner's estimate on PostgreSQL when
  unfiltered, otherwise a count capped at ``cap`` rows (``COUNT(*)`` over ``LIMIT cap+1``);
- no "(N total)" count of the unfiltered table;
- ordering stays on the admin's ``ordering`` (which must match an index) unless the admin
  names index-backed columns in ``sortable_by``: clicking another header is ignored;
- page links stop where the OFFSET would get expensive (``max_pages``);
- ``list_select_related`` must be set by the admin so that rows never cost a query each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from opsconsole.templatetags.ops_pages import format_seconds


def status_badge(status: str, label: str | None = None) -> SafeString:
    """A status as a coloured pill in a changelist (opsconsole/admin.css draws it; the CSP
    allows no style="" attributes)."""
    return format_html('<span class="badge {}">{}</span>', status, label or status)


def relative_time(moment: datetime | None, now: datetime | None = None) -> SafeString | str:
    """``4m 10s ago`` (or ``in 5m 0s``), the date-time in full on hover."""
    if moment is None:
        return "—"
    seconds = ((now or timezone.now()) - moment).total_seconds()
    text = f"{format_seconds(seconds)} ago" if seconds >= 0 else f"in {format_seconds(-seconds)}"
    full = formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), full, text)


class EstimatedCountPaginator(Paginator):
    """Never runs an unbounded COUNT(*).

    Unfiltered on PostgreSQL the planner's row estimate is used; otherwise the count is
    capped: "more than 10,000" is as useful to an operator as the exact figure.
    """

    cap = 10_000
    # Past this page an OFFSET scan reads too many rows; narrow the list with a filter instead.
    max_pages = 200

    @cached_property
    def count(self) -> int:
        query = self.object_list
        if not hasattr(query, "query"):
            return len(query)
        db = query.db
        if not query.query.where and connections[db].vendor == "postgresql":
            estimate = self._estimate(db, query.model._meta.db_table)
            if estimate is not None and estimate > self.cap:
                return estimate
        # A subquery with LIMIT: the database stops counting at cap + 1 rows.
        return query.order_by()[: self.cap + 1].count()

    @staticmethod
    def _estimate(db: str, table: str) -> int | None:
        with connections[db].cursor() as cursor:
            # reltuples is -1 (PostgreSQL 14+) or 0 for a table never analysed: use the count.
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connections[db].ops.quote_name(table)],
            )
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] and row[0] > 0 else None

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, self.max_pages)


class LargeTableChangeList(ChangeList):
    def get_results(self, request: Any) -> None:
        super().get_results(request)
        # Without the full count Django prints "N results (Show all)" on every page, even
        # with no filter set, where "Show all" leads back to the same page. Unfiltered, the
        # list is the whole table: its count is the full count, and the line disappears.
        if self.full_result_count is None and not self.has_active_filters and not self.query:
            self.full_result_count = self.result_count

    def get_ordering(self, request: Any, queryset: Any) -> list[Any]:
        if self.sortable_by is not None and not self.sortable_by and ORDER_VAR in self.params:
            # Sorting by an unindexed column would sort the whole table for every page.
            params = self.params
            self.params = {k: v for k, v in params.items() if k != ORDER_VAR}
            try:
                return super().get_ordering(request, queryset)
            finally:
                self.params = params
        return super().get_ordering(request, queryset)


class LargeTableAdminMixin:
    """For result tables: capped counts, no full-table count, index-backed ordering only."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    # No sortable headers by default; list index-backed columns to allow sorting by them.
    sortable_by: tuple[str, ...] = ()

    def get_changelist(self, request: Any, **kwargs: Any) -> type[ChangeList]:
        return LargeTableChangeList
