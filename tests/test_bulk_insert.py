"""opsconsole.bulk.insert_rows: many rows in one statement, with the model's defaults."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import Check, CheckRun
from opsconsole.bulk import insert_rows


@pytest.mark.django_db
def test_rows_take_the_model_defaults_for_the_columns_they_leave_out(settings):
    settings.CHECKS_DEFAULT_INTERVAL = 120
    with CaptureQueriesContext(connection) as queries:
        insert_rows(Check, [{"name": f"c{i}", "kind": "heartbeat"} for i in range(3)])
    assert len(queries.captured_queries) == 1
    made = Check.objects.get(name="c1")
    made.full_clean()
    assert made.created_at is not None and made.updated_at == made.created_at
    assert (made.interval_seconds, made.config, made.component, made.enabled) == (
        120,
        {},
        "",
        Check._meta.get_field("enabled").get_default(),
    )


@pytest.mark.django_db
def test_a_not_null_column_without_value_or_default_fails_before_the_database():
    with pytest.raises(ValueError, match="check_obj_id"):
        insert_rows(CheckRun, [{"status": "ok"}])
    assert CheckRun.objects.count() == 0
