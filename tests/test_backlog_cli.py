"""``manage.py backlog``: every subcommand, its output and its refusals."""

from __future__ import annotations

import io
import json
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backlog import services
from backlog.models import BacklogEntry, BacklogStatus
from tests.conftest import manage

pytestmark = pytest.mark.django_db


def run(*args: str, stdin: str | None = None) -> str:
    out = io.StringIO()
    if stdin is not None:
        import sys

        saved, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            call_command("backlog", *args, stdout=out)
        finally:
            sys.stdin = saved
    else:
        call_command("backlog", *args, stdout=out)
    return out.getvalue()


def snapshot() -> list[dict]:
    return list(BacklogEntry.objects.order_by("id").values())


def test_add_twice_leaves_one_pending_entry():
    assert "added users:42" in run("add", "42", "profile changed", "--source", "users")
    assert "already pending" in run("add", "42", "--source", "users")
    assert (
        BacklogEntry.objects.filter(source="users", key="42", status=BacklogStatus.PENDING).count()
        == 1
    )
    assert BacklogEntry.objects.get().reason == "profile changed"


def test_add_with_payload_keeps_the_json():
    run("add", "7", "--payload", '{"email": "a@example.org"}')
    assert BacklogEntry.objects.get().payload == {"email": "a@example.org"}


def test_bad_payload_is_refused_before_anything_is_written():
    with pytest.raises(CommandError, match="--payload is not valid JSON"):
        run("add", "7", "--payload", "{not json")
    with pytest.raises(CommandError, match="JSON object"):
        run("add", "7", "--payload", "[1, 2]")
    assert BacklogEntry.objects.count() == 0


def test_add_file_with_100000_keys_takes_a_statement_per_thousand_keys(tmp_path):
    """What keeps a 100,000-key add fast (bench/backlog.py times it): multi-row inserts of a
    chunk of keys each, never a statement per key."""
    path = tmp_path / "keys.txt"
    path.write_text("\n".join(f"user-{n}" for n in range(100_000)) + "\n")
    with CaptureQueriesContext(connection) as queries:
        output = run("add", "--file", str(path), "--source", "users")
    assert "added 100000" in output
    assert BacklogEntry.objects.filter(status=BacklogStatus.PENDING).count() == 100_000
    inserts = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("INSERT")]
    # SQLite: 1,000 rows per INSERT (its parameter limit); PostgreSQL: 2,000 per unnest().
    assert len(inserts) <= 100, len(inserts)
    assert len(queries) <= len(inserts) + 20, [q["sql"][:80] for q in queries[:30]]
    # A second run adds nothing: every key is already pending.
    assert "added 0, already pending 100000" in run("add", "--file", str(path), "--source", "users")


def test_add_from_stdin_accepts_json_lines():
    lines = 'a\n{"key": "b", "source": "orders", "payload": {"n": 1}}\n\n'
    assert "added 2" in run("add", "--file", "-", stdin=lines)
    assert BacklogEntry.objects.get(key="b").source == "orders"


def test_add_file_with_a_bad_line_adds_nothing(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text('ok\n{"key": "x", "payload": [1]}\n')
    with pytest.raises(CommandError, match="line 2"):
        run("add", "--file", str(path))
    assert BacklogEntry.objects.count() == 0


def test_add_without_key_or_file_is_an_error():
    with pytest.raises(CommandError, match="give a KEY"):
        run("add")


def test_list_shows_pending_entries_and_json():
    services.enqueue("users", "1", "changed")
    services.enqueue("users", "2")
    text = run("list")
    assert "users" in text and "changed" in text
    rows = json.loads(run("list", "--json", "--limit", "1"))
    assert [row["key"] for row in rows] == ["1"]
    assert run("list", "--status", "failed").startswith("no failed entries")


def test_status_json_has_the_documented_fields():
    services.enqueue("users", "1")
    figures = json.loads(run("status", "--json"))
    assert {
        "pending",
        "processing",
        "processed",
        "failed",
        "by_source",
        "oldest_pending_age_seconds",
        "processed_last_hour",
    } <= set(figures)
    assert figures["pending"] == 1
    assert "1 pending" in run("status")


def test_process_dry_run_changes_no_row_and_says_what_it_would_do(settings, http_server):
    server = http_server()
    settings.BACKLOG_HANDLERS = {"users": f"webhook:{server.url}"}
    for key in ("1", "2"):
        services.enqueue("users", key)
    before = snapshot()
    output = run("process", "--dry-run")
    assert snapshot() == before
    assert "would process 2" in output and f"POST {server.url}" in output
    assert f"users:1 (attempt 1): would POST {server.url}" in output
    assert server.requests == []


def test_process_delivers_and_reports(settings, http_server):
    server = http_server()
    settings.BACKLOG_HANDLERS = {"users": f"webhook:{server.url}"}
    services.enqueue("users", "1")
    services.enqueue("ghost", "2")
    output = run("process")
    assert "processed 1" in output and "failed 1" in output and "BACKLOG_HANDLERS" in output
    assert len(server.requests) == 1


def test_mark_processed_of_unknown_key_is_a_clear_error():
    with pytest.raises(CommandError, match="no pending or failed entry for key 'nobody'"):
        run("mark_processed", "nobody")


def test_mark_processed_marks_the_pending_entry():
    services.enqueue("users", "1")
    assert "marked 1 entry" in run("mark_processed", "1", "--source", "users")
    assert BacklogEntry.objects.get().status == BacklogStatus.PROCESSED


def test_retry_failed_requeues(settings):
    settings.BACKLOG_HANDLERS = {}
    services.enqueue("users", "1")
    services.process()
    assert "requeued 1" in run("retry_failed")
    assert BacklogEntry.objects.get().status == BacklogStatus.PENDING


def test_clear_with_yes_deletes_only_the_filtered_entries():
    services.enqueue("users", "1")
    services.enqueue("orders", "1")
    assert "deleted 1" in run("clear", "--source", "orders", "--yes")
    assert list(BacklogEntry.objects.values_list("source", flat=True)) == ["users"]


def test_clear_without_yes_and_without_a_terminal_refuses_and_deletes_nothing(subprocess_env):
    services.enqueue("users", "1")
    services.enqueue("users", "2")
    result = subprocess.run(
        manage("backlog", "clear"),
        env=subprocess_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--yes" in result.stderr
    assert BacklogEntry.objects.count() == 2


def test_errors_exit_non_zero_from_the_shell(subprocess_env):
    bad_payload = subprocess.run(
        manage("backlog", "add", "1", "--payload", "{oops"),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    unknown = subprocess.run(
        manage("backlog", "mark_processed", "ghost"),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_payload.returncode != 0 and "not valid JSON" in bad_payload.stderr
    assert unknown.returncode != 0 and "ghost" in unknown.stderr
    assert BacklogEntry.objects.count() == 0


def test_help_describes_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        call_command("backlog", "--help")
    text = capsys.readouterr().out
    for name in ("add", "list", "status", "process", "clear", "mark_processed", "retry_failed"):
        assert name in text


def test_process_test_is_the_helpers_spelling_of_dry_run(settings):
    settings.BACKLOG_HANDLERS = {}
    services.enqueue("users", "1")
    before = snapshot()
    output = run("process", "--test")
    assert snapshot() == before
    assert output.startswith("dry run: would process 1 due entries (nothing changed)")


def test_dry_run_reports_each_entry_once_with_what_would_happen_to_it(settings, http_server):
    server = http_server()
    settings.BACKLOG_HANDLERS = {"users": f"webhook:{server.url}", "legacy": "nowhere.sync"}
    for source, key in (("users", "1"), ("ghost", "2"), ("users", "3"), ("legacy", "4")):
        services.enqueue(source, key)
    lines = run("process", "--dry-run").splitlines()
    assert lines[0] == "dry run: would process 4 due entries (nothing changed)"
    entries = lines[1:]
    assert entries == [
        f"  users:1 (attempt 1): would POST {server.url}",
        "  ghost:2 (attempt 1): would fail, not retried: no handler for source 'ghost' "
        "in BACKLOG_HANDLERS",
        f"  users:3 (attempt 1): would POST {server.url}",
        "  legacy:4 (attempt 1): would fail, not retried: BACKLOG_HANDLERS['legacy']: "
        "cannot import 'nowhere.sync': No module named 'nowhere'",
    ]
    assert server.requests == []


def test_mark_processed_without_source_finds_the_key_in_its_only_source():
    services.enqueue("users", "42")
    services.enqueue("orders", "43")
    assert "marked 1 entry of users:42 processed" in run("mark_processed", "42")
    assert BacklogEntry.objects.get(key="42").status == BacklogStatus.PROCESSED
    assert BacklogEntry.objects.get(key="43").status == BacklogStatus.PENDING


def test_mark_processed_of_a_key_in_several_sources_names_them_and_marks_nothing(
    subprocess_env,
):
    services.enqueue("users", "7")
    services.enqueue("orders", "7")
    result = subprocess.run(
        manage("backlog", "mark_processed", "7"),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "key '7' is pending or failed in 2 sources: orders, users" in result.stderr
    assert "--source" in result.stderr
    assert set(BacklogEntry.objects.values_list("status", flat=True)) == {BacklogStatus.PENDING}
    assert "marked 1 entry of orders:7" in run("mark_processed", "7", "--source", "orders")
