"""Admin helpers for tables with millions of rows."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Never runs an unbounded COUNT(*).

    Unfiltered on PostgreSQL the planner's row estimate is used; otherwise the count is
    capped: "more than 10,000" is as useful to an operator as the exact figure.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        query = self.object_list
        if not query.query.where and connections[query.db].vendor == "postgresql":
            with connections[query.db].cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [query.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > self.cap:
                return int(row[0])
        return query[: self.cap + 1].count() if hasattr(query, "count") else len(query)


class LargeTableAdminMixin:
    """For result tables: capped counts, no full-table count for the "show all" link."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50
