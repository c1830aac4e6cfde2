"""Data checks against real tables: freshness, sql_value (read-only, timeouts) and baselines."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.checks.baseline import compare
from monitoring.checks.checkfile import CheckFileError, validate_document
from monitoring.checks.runner import run_checks
from monitoring.kinds import ConfigError, get_kind
from monitoring.models import Check, CheckRun
from tests.conftest import on_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def make_check(name: str, kind: str, config: dict, **fields) -> Check:
    # These tests judge the kinds themselves: no start-up grace (tests/test_check_trust.py).
    fields.setdefault("startup_grace_seconds", 0)
    return Check.objects.create(
        name=name, kind=kind, config=get_kind(kind).validate_config(config), **fields
    )


def run(check: Check) -> CheckRun:
    [result] = run_checks([check], claim=False)
    return result.run


def rows_aged(source: Check, count: int, age: timedelta) -> None:
    """Real rows in a real table (monitoring_checkrun), created ``age`` ago."""
    at = timezone.now() - age
    CheckRun.objects.bulk_create(
        [CheckRun(check_obj=source, status="ok", value=i, created_at=at) for i in range(count)]
    )


@pytest.fixture
def source() -> Check:
    """The check whose runs play the part of a watched table's rows."""
    return Check.objects.create(name="event-source", kind="system", config={"metric": "cpu"})


# --- freshness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(minutes=30), "ok"),
        (timedelta(hours=3), "warning"),
        (timedelta(hours=5), "critical"),
    ],
)
def test_freshness_by_sql_judges_the_age_of_the_newest_row(source, age, expected):
    rows_aged(source, 3, age)
    check = make_check(
        "runs-fresh",
        "freshness",
        {"sql": f"SELECT max(created_at) FROM monitoring_checkrun WHERE check_id = {source.pk}"},
    )
    result = run(check)
    assert result.status == expected, result.message
    assert result.value == pytest.approx(age.total_seconds(), abs=30)
    assert "newest row" in result.message


def test_freshness_of_an_empty_table_is_critical_no_rows(source):
    check = make_check(
        "runs-fresh",
        "freshness",
        {"sql": f"SELECT max(created_at) FROM monitoring_checkrun WHERE check_id = {source.pk}"},
    )
    result = run(check)
    assert result.status == "critical"
    assert "no rows" in result.message


def test_freshness_by_model_and_field_with_custom_limits(source):
    rows_aged(source, 1, timedelta(minutes=20))
    check = make_check(
        "runs-model",
        "freshness",
        {
            "model": "monitoring.CheckRun",
            "field": "created_at",
            "warn_after": "10m",
            "crit_after": "1h",
        },
    )
    result = run(check)
    assert result.status == "warning"
    assert "above warning threshold 600" in result.message


def test_freshness_reads_epoch_seconds():
    check = make_check("epoch", "freshness", {"sql": f"SELECT {int(time.time()) - 3 * 3600}"})
    assert run(check).status == "warning"


def test_freshness_against_a_dsn(tmp_path, postgres_dsn):
    import sqlite3

    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE fetches (fetched_at REAL)")
        conn.execute("INSERT INTO fetches VALUES (?)", (time.time() - 5 * 3600,))
    check = make_check(
        "dsn-sqlite",
        "freshness",
        {"dsn": f"sqlite:///{path}", "sql": "SELECT max(fetched_at) FROM fetches"},
    )
    assert run(check).status == "critical"
    check = make_check(
        "dsn-pg", "freshness", {"dsn": postgres_dsn, "sql": "SELECT now() - interval '30 minutes'"}
    )
    assert run(check).status == "ok"


def test_freshness_config_errors_name_the_field():
    with pytest.raises(ConfigError) as error:
        get_kind("freshness").validate_config({"model": "monitoring.Nope", "field": "x"})
    assert "config.model" in error.value.errors
    with pytest.raises(ConfigError) as error:
        get_kind("freshness").validate_config({})
    assert "config.sql" in error.value.errors


# --- sql_value -------------------------------------------------------------------------------


@pytest.mark.parametrize(("events", "expected"), [(150, "ok"), (50, "warning"), (0, "critical")])
def test_sql_value_below_thresholds_counts_events(source, events, expected):
    rows_aged(source, events, timedelta(minutes=5))
    rows_aged(source, 40, timedelta(hours=3))  # outside the hour: not counted
    check = make_check(
        "events-last-hour",
        "sql_value",
        {
            "sql": "SELECT count(*) FROM monitoring_checkrun "
            f"WHERE check_id = {source.pk} AND created_at > {{since}}",
            "since": "1h",
        },
        direction="below",
        warn=100,
        crit=1,
    )
    result = run(check)
    assert result.value == events
    assert result.status == expected, result.message


def test_sql_value_counts_rows_of_a_watched_table(source):
    rows_aged(source, 7, timedelta(minutes=1))
    check = make_check("runs-rows", "sql_value", {"table": "monitoring_checkrun"}, warn=5)
    result = run(check)
    assert result.value == 7
    assert result.status == "warning"
    assert "rows in monitoring_checkrun 7" in result.message


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("UPDATE monitoring_check SET name = 'x'", "UPDATE"),
        ("DELETE FROM monitoring_checkrun", "DELETE"),
        (
            "WITH gone AS (DELETE FROM monitoring_checkrun RETURNING id) SELECT count(*) FROM gone",
            "DELETE",
        ),
        ("SELECT 1; DROP TABLE monitoring_check", "one statement"),
    ],
)
def test_a_query_that_would_write_is_refused_at_load(sql, word):
    document = {"checks": [{"name": "sneaky", "kind": "sql_value", "config": {"sql": sql}}]}
    with pytest.raises(CheckFileError) as error:
        validate_document(document)
    text = str(error.value)
    assert "check 'sneaky': config.sql:" in text
    assert word in text
    assert not Check.objects.filter(name="sneaky").exists()


def test_words_inside_literals_and_names_are_not_writes():
    sql = (
        "SELECT count(*) FROM monitoring_checkrun "
        "WHERE message <> 'DELETE me' AND status = 'ok' -- UPDATE"
    )
    assert get_kind("sql_value").validate_config({"sql": sql})["sql"] == sql


def test_a_write_that_slips_through_fails_at_run_time_on_the_read_only_connection(source):
    # Written straight to the database, bypassing validation: the connection must still refuse.
    check = Check.objects.create(
        name="slipped",
        kind="sql_value",
        config={"sql": f"UPDATE monitoring_check SET name = 'hijacked' WHERE id = {source.pk}"},
    )
    result = run(check)
    assert result.status == "critical"
    assert "refused" in result.message or "read-only" in result.message
    source.refresh_from_db()
    assert source.name == "event-source"


def test_a_slow_query_hits_the_statement_timeout_and_is_critical():
    if on_postgres():
        sql = "SELECT 1 FROM pg_sleep(10)"
    else:  # SQLite has no sleep: a long recursive count stands in for it
        sql = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
            "SELECT count(*) FROM n"
        )
    check = make_check(
        "slow", "sql_value", {"sql": sql, "statement_timeout": "1s"}, timeout_seconds=5
    )
    started = time.monotonic()
    result = run(check)
    elapsed = time.monotonic() - started
    assert result.status == "critical"
    assert "timed out after 1s" in result.message and "statement timeout" in result.message
    assert elapsed < 3, f"took {elapsed:.1f}s"


def test_null_result_is_critical_unless_null_as_is_given():
    check = make_check("nothing", "sql_value", {"sql": "SELECT NULL"})
    assert run(check).status == "critical"
    check = make_check(
        "nothing-zero",
        "sql_value",
        {"sql": "SELECT NULL", "null_as": 0},
        direction="below",
        crit=-1,
    )
    result = run(check)
    assert (result.status, result.value) == ("ok", 0)


# --- baseline --------------------------------------------------------------------------------


def history(check: Check, values: list[float]) -> None:
    start = timezone.now() - timedelta(hours=len(values))
    CheckRun.objects.bulk_create(
        [
            CheckRun(check_obj=check, status="ok", value=v, created_at=start + timedelta(hours=i))
            for i, v in enumerate(values)
        ]
    )


AROUND_3000 = [2950, 3010, 3100, 2980, 3050, 2900, 3020, 3000, 2990, 3080, 3060, 2970]


def test_baseline_drop_gives_warning_naming_the_drop_and_the_baseline():
    check = make_check(
        "participants", "sql_value", {"sql": "SELECT 1200"}, baseline={"drop_pct": 50, "window": 12}
    )
    history(check, AROUND_3000)
    result = run(check)
    assert result.status == "warning"
    assert "dropped 60 % vs baseline 3,005" in result.message
    check.refresh_from_db()
    assert check.status == "warning"


def test_baseline_without_enough_history_gives_no_verdict():
    check = make_check(
        "participants", "sql_value", {"sql": "SELECT 1200"}, baseline={"drop_pct": 50, "window": 12}
    )
    history(check, AROUND_3000[:11])
    result = run(check)
    assert result.status == "ok"
    assert "baseline" not in result.message


def test_baseline_within_limits_and_rises():
    assert compare(2900, AROUND_3000, {"drop_pct": 50, "window": 12}).status == "ok"
    rose = compare(9000, AROUND_3000, {"rise_pct": 100, "window": 12})
    assert rose.status == "warning"
    assert rose.message == (
        "rose 200 % vs baseline 3,005 (more than rise_pct 100 %, median of the last 12 values)"
    )
    assert compare(1, [0] * 12, {"drop_pct": 50, "window": 12}) is None


def test_baseline_adds_to_the_threshold_verdict():
    check = make_check(
        "participants",
        "sql_value",
        {"sql": "SELECT 1200"},
        baseline={"drop_pct": 50},
        direction="below",
        warn=1000,
        crit=10,
    )
    history(check, AROUND_3000)
    result = run(check)
    assert result.status == "warning"
    assert result.message.startswith("value 1,200")
    assert "dropped 60 %" in result.message


# --- the demo check file ---------------------------------------------------------------------


def test_demo_file_data_checks_run_against_the_consoles_own_tables(source, settings):
    from monitoring.checks.checkfile import apply_document
    from monitoring.management.commands.bootstrap import demo_document

    # The file as bootstrap loads it: its placeholders ({site_url}, {base_dir}) filled in.
    apply_document(validate_document(demo_document()))
    rows_aged(source, 40, timedelta(minutes=3))
    names = ["console-runs-fresh", "console-runs-last-hour", "console-runs-rows"]
    results = run_checks(list(Check.objects.filter(name__in=names).order_by("name")), claim=False)
    by_name = {r.check.name: r.run for r in results}
    assert by_name["console-runs-fresh"].status == "ok", by_name["console-runs-fresh"].message
    assert by_name["console-runs-last-hour"].value == 40
    assert by_name["console-runs-last-hour"].status == "ok"
    assert by_name["console-runs-rows"].value == 40
    assert Check.objects.get(name="console-queue").kind == "queue"
