"""The 30-minute report in seed 004's layout, fed by the check file's ``report:`` section.

On PostgreSQL, seed 004's own tables (events, sealed epochs with participants) are built in a
schema of their own, its workers run as real processes, the checks run for real, and the text
report is compared section by section with the seed's sample report.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from monitoring.checks.checkfile import CheckFileError, load_check_file, validate_document
from monitoring.checks.runner import run_checks
from monitoring.models import Check, Report, ReportLayout
from monitoring.observability.report import build_report, rows_section

pytestmark = pytest.mark.django_db(transaction=True)

HEAVY = "═" * 80
LIGHT = "─" * 80

# Seed 004's sample report, verbatim ("Monitoring Reports" in the off-chain monitoring guide).
SEED_SAMPLE = """\
════════════════════════════════════════════════════════════════════════════════
OFF-CHAIN HEALTH REPORT
Timestamp: 2025-11-15T04:50:30.123Z
════════════════════════════════════════════════════════════════════════════════

📊 PROCESS STATUS
────────────────────────────────────────────────────────────────────────────────
✅ twzrd-aggregator
   Status: online | Uptime: 2d 5h | Restarts: 3
   Memory: 1024MB | CPU: 5%

✅ tree-builder-worker
   Status: online | Uptime: 1d 12h | Restarts: 1
   Memory: 512MB | CPU: 2%

✅ cls-worker-1
   Status: online | Uptime: 12h 30m | Restarts: 2
   Memory: 768MB | CPU: 8%

🗄️  DATABASE HEALTH
────────────────────────────────────────────────────────────────────────────────
✅ Connected
Events (last hour): 4523
Latest epoch: 1762370000 (1250 seconds old)

📈 RECENT EPOCHS
────────────────────────────────────────────────────────────────────────────────
Epoch    Channel         Participants  Sealed              Published
────────────────────────────────────────────────────────────────────────────────
1762370000 jasontheween   3210          2025-11-15 04:45:30 ✅
1762366400 train          2156          2025-11-15 03:45:28 ✅
1762362800 sykkuno        1845          2025-11-15 02:45:27 ✅
...

✅ No alerts

💾 SYSTEM RESOURCES
────────────────────────────────────────────────────────────────────────────────
Memory: 8.2G used | 7.8G free
CPU Load (1/5/15 min): 0.45, 0.38, 0.32
════════════════════════════════════════════════════════════════════════════════
"""

WORKERS = ("twzrd-aggregator", "tree-builder-worker", "cls-worker-1")
CHANNELS = ("jasontheween", "train", "sykkuno", "hasanabi", "xqc", "pokimane")
DURATION = r"(\d+d( \d+h)?|\d+h( \d+m)?|\d+m( \d+s)?|\d+s)"

# Each section of the seed's sample as line patterns: a pattern ending in "+" may repeat.
# Both the sample and the console's report must match them, so the patterns cannot drift
# from the seed without this test noticing.
HEADER = [
    re.escape(HEAVY),
    r"OFF-CHAIN HEALTH REPORT",
    r"Timestamp: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
    re.escape(HEAVY),
]
PROCESS = [
    r"(✅|⚠️ |❌) (?P<name>[\w-]+)",
    rf"   Status: (online|offline|errored|stopped) \| Uptime: {DURATION} \| Restarts: \d+",
    r"   Memory: \d+MB \| CPU: \d+%",
]
DATABASE = [
    r"🗄️  DATABASE HEALTH",
    re.escape(LIGHT),
    r"✅ Connected",
    r"Events \(last hour\): \d+",
    r"Latest epoch: \d{10} \(\d+ seconds old\)",
]
EPOCHS = [
    r"📈 RECENT EPOCHS",
    re.escape(LIGHT),
    r"Epoch\s+Channel\s+Participants\s+Sealed\s+Published",
    re.escape(LIGHT),
    r"\d{10}\s+[a-z]+\s+\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+(✅|❌)+",
]
ALERTS = [r"✅ No alerts"]
RESOURCES = [
    r"💾 SYSTEM RESOURCES",
    re.escape(LIGHT),
    r"Memory: \d+\.\dG used \| \d+\.\dG free",
    r"CPU Load \(1/5/15 min\): \d+\.\d\d, \d+\.\d\d, \d+\.\d\d",
]
# What the console adds to the seed's sections, and nothing else.
EXTRA_RESOURCES = [r"Disk /: \d+% used \| \d+\.\dG free"]


def sections_of(text: str) -> dict[str, list[str]]:
    """The report cut at its blank lines into header, process blocks and sections."""
    lines = text.rstrip("\n").split("\n")
    blocks, current = [], []
    for line in lines:
        if line == "":
            blocks.append(current)
            current = []
        else:
            current.append(line)
    blocks.append(current)
    found: dict[str, list[str]] = {"header": blocks[0], "processes": [], "resources": []}
    for block in blocks[1:]:
        first = block[0]
        if first.startswith("📊"):
            found["process_heading"] = block[:2]
            found["processes"].append(block[2:])
        elif first.startswith("🗄"):
            found["database"] = block
        elif first.startswith("📈"):
            found["rows"] = [line for line in block if line != "..."]
        elif first.startswith("💾"):
            found["resources"] = block[:-1]  # the closing heavy rule
            found["closing"] = block[-1:]
        elif first.startswith("✅ No alerts") or first.startswith("🚨"):
            found["alerts"] = block
        else:
            found["processes"].append(block)
    return found


def assert_shape(lines: list[str], patterns: list[str], what: str) -> None:
    """Every line matches the pattern in turn; the last pattern repeats (table rows)."""
    assert lines, f"{what}: section missing"
    for index, line in enumerate(lines):
        pattern = patterns[min(index, len(patterns) - 1)]
        assert re.fullmatch(pattern, line), f"{what} line {index}: {line!r} !~ {pattern!r}"
    assert len(lines) >= len(patterns), f"{what}: {len(lines)} lines, expected {len(patterns)}"


def compare_with_seed(text: str) -> None:
    """The seed's sample and the console's report, section by section, against the same shapes."""
    for name, report in (("seed sample", sections_of(SEED_SAMPLE)), ("report", sections_of(text))):
        assert_shape(report["header"], HEADER, f"{name}: header")
        assert report["process_heading"] == ["📊 PROCESS STATUS", LIGHT], name
        workers = [block for block in report["processes"] if "task queue" not in block[0]]
        assert [re.fullmatch(PROCESS[0], b[0])["name"] for b in workers] == list(WORKERS), name
        for block in workers:
            assert_shape(block, PROCESS, f"{name}: process {block[0]}")
        assert_shape(report["database"], DATABASE, f"{name}: database health")
        assert_shape(report["rows"], EPOCHS, f"{name}: recent epochs")
        assert_shape(report["alerts"], ALERTS, f"{name}: alerts")
        resources = [
            line
            for line in report["resources"]
            if not any(re.fullmatch(p, line) for p in EXTRA_RESOURCES)
        ]
        assert_shape(resources, RESOURCES, f"{name}: system resources")
        assert report["closing"] == [HEAVY], name


@pytest.fixture
def seed_schema(postgres_dsn) -> Iterator[str]:
    """Seed 004's tables in a schema of their own, dropped afterwards."""
    schema = f"seed004_{uuid.uuid4().hex[:10]}"
    now = timezone.now()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(
                f"CREATE TABLE {schema}.events (id bigserial PRIMARY KEY, channel text NOT NULL, "
                "created_at timestamptz NOT NULL)"
            )
            conn.execute(
                f"CREATE TABLE {schema}.sealed_epochs (epoch bigint PRIMARY KEY, channel text "
                "NOT NULL, participants integer NOT NULL, sealed_at timestamptz NOT NULL, "
                "published boolean NOT NULL DEFAULT false)"
            )
            conn.execute(f"CREATE SEQUENCE {schema}.epoch_seq")
            # 4523 events in the last hour and some older ones that must not count.
            conn.execute(
                f"INSERT INTO {schema}.events (channel, created_at) "
                "SELECT %s, %s - make_interval(secs => g %% 3500) FROM generate_series(1, 4523) g",
                ("jasontheween", now),
            )
            conn.execute(
                f"INSERT INTO {schema}.events (channel, created_at) "
                "SELECT 'train', %s - interval '3 hours' FROM generate_series(1, 700)",
                (now,),
            )
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {schema}.sealed_epochs VALUES (%s, %s, %s, %s, %s)",
                    [
                        (
                            1762370000 - 3600 * k,
                            CHANNELS[k % len(CHANNELS)],
                            3210 - 300 * k,
                            now - timedelta(seconds=1250 + 3600 * k),
                            k != 11,  # the oldest is not published yet
                        )
                        for k in range(12)
                    ],
                )
            yield schema
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def seed_workers(seed_schema) -> Iterator[dict[str, str]]:
    """The seed's three workers as real processes, each with a marker in its command line."""
    markers = {name: f"{seed_schema}-{name}" for name in WORKERS}
    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])
        for marker in markers.values()
    ]
    try:
        yield markers
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def seed_check_file(path, dsn: str, schema: str, markers: dict[str, str]) -> None:
    checks = "\n".join(
        f"""
  - name: {name}
    kind: process
    config: {{cmdline: "{marker}"}}"""
        for name, marker in markers.items()
    )
    path.write_text(
        f"""
checks:{checks}
  - name: offchain-db
    kind: database
    config: {{dsn: "{dsn}"}}
  - name: events-last-hour
    kind: sql_value
    warn: 100
    direction: below
    config:
      dsn: "{dsn}"
      sql: "SELECT count(*) FROM {schema}.events WHERE created_at > {{since}}"
      since: 1h
  - name: latest-epoch
    kind: sql_value
    config:
      dsn: "{dsn}"
      sql: "SELECT max(epoch) FROM {schema}.sealed_epochs"
  - name: epoch-age
    kind: freshness
    config:
      dsn: "{dsn}"
      sql: "SELECT max(sealed_at) FROM {schema}.sealed_epochs"
report:
  processes: [twzrd-aggregator, tree-builder-worker, cls-worker-1]
  database:
    connection: offchain-db
    figures:
      - label: Events (last hour)
        check: events-last-hour
      - label: Latest epoch
        format: "{{latest-epoch}} ({{epoch-age:.0f}} seconds old)"
  recent_rows:
    - title: RECENT EPOCHS
      dsn: "{dsn}"
      sql: >-
        SELECT epoch, channel, participants, sealed_at, published
        FROM {schema}.sealed_epochs ORDER BY epoch DESC
      columns: [Epoch, Channel, Participants, Sealed, Published]
      limit: 10
"""
    )


def test_seed_004_report_on_postgres_follows_the_seed_sample_section_by_section(
    needs_postgres, postgres_dsn, seed_schema, seed_workers, settings, tmp_path
):
    settings.REPORT_TITLE = "OFF-CHAIN HEALTH REPORT"
    check_file = tmp_path / "checks.yaml"
    seed_check_file(check_file, postgres_dsn, seed_schema, seed_workers)
    result = load_check_file(check_file)
    assert result.counts["report"] == {"updated": 1}
    results = run_checks(list(Check.objects.order_by("name")), claim=False)
    assert {r.run.check_obj.name: r.run.status for r in results} == dict.fromkeys(
        [*WORKERS, "offchain-db", "events-last-hour", "latest-epoch", "epoch-age"], "ok"
    ), [r.run.message for r in results]

    report = build_report()
    print("\n" + report.text)  # the produced report, for the record (-s)
    compare_with_seed(report.text)

    text = report.text
    assert "Events (last hour): 4523\n" in text
    assert re.search(r"Latest epoch: 1762370000 \(12[5-9]\d seconds old\)", text)
    rows = sections_of(text)["rows"][4:]
    assert len(rows) == 10  # the configured limit, newest first
    assert rows[0].split()[:3] == ["1762370000", "jasontheween", "3210"]
    assert rows[-1].split()[0] == str(1762370000 - 9 * 3600)
    assert all(row.endswith("✅") for row in rows)  # the unpublished one is the 12th
    kinds = [s["kind"] for s in report.sections]
    assert kinds == ["processes", "database", "rows", "alerts", "resources"]
    epochs = report.sections[2]
    assert epochs["rows"][0][4] is True and epochs["columns"][0] == "Epoch"


def test_a_recent_rows_query_that_writes_is_refused_by_postgres_and_shown_in_its_section(
    needs_postgres, postgres_dsn, seed_schema
):
    # Passes the text screen (no write keyword): the read-only transaction is what stops it.
    section = rows_section(
        {
            "title": "SEQUENCE",
            "sql": f"SELECT setval('{seed_schema}.epoch_seq', 42)",
            "target": {"dsn": postgres_dsn},
            "columns": [],
            "limit": 5,
            "statement_timeout": 5.0,
        }
    )
    assert section["status"] == "critical" and section["rows"] == []
    assert "refused: the query tried to write" in section["error"]
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute(f"SELECT last_value FROM {seed_schema}.epoch_seq").fetchone()[0] == 1


def test_report_section_problems_name_the_field_and_unknown_checks_are_refused():
    Check.objects.create(name="cpu", kind="system", config={"metric": "cpu"})
    document = {
        "checks": [{"name": "events", "kind": "sql_value", "config": {"sql": "SELECT 1"}}],
        "report": {
            "processes": ["cpu", "ghost"],
            "database": {
                "connection": "nowhere",
                "figures": [
                    {"label": "Events", "check": "events", "format": "{value:zz}"},
                    {"label": "", "format": "{missing} and {events.message}"},
                    {"check": "events", "colour": "red"},
                    {"label": "Broken", "format": "{events} {"},
                ],
            },
            "recent_rows": [
                {"title": "X", "sql": "DELETE FROM events", "limit": 0, "columns": "a"},
                {"sql": "SELECT 1", "alias": "elsewhere", "statement_timeout": "2h"},
                "not a mapping",
            ],
            "charts": [],
        },
    }
    with pytest.raises(CheckFileError) as caught:
        validate_document(document)
    problems = caught.value.problems
    expected = [
        "report.processes[0]: 'cpu' is a system check, not a process check",
        "report.processes[1]: no check named 'ghost' in this file or the database",
        "report.database.connection: no check named 'nowhere' in this file or the database",
        "report.database.figures[0].format: {value:zz}: 'zz' is not a number format",
        "report.database.figures[1].label: is required",
        "report.database.figures[1].format: {missing}: no check named 'missing'",
        "report.database.figures[2].colour: unknown field",
        "report.database.figures[2].label: is required",
        "report.database.figures[3].format: unbalanced { or }",
        "report.recent_rows[0].sql: refused: only read-only SELECT queries may run",
        "report.recent_rows[0].columns: must be a list of column headings",
        "report.recent_rows[0].limit: must be a whole number from 1 to 100",
        "report.recent_rows[1].title: is required",
        "report.recent_rows[1].alias: unknown database alias 'elsewhere'",
        "report.recent_rows[1].statement_timeout: must be more than 0 and at most 30s",
        "report.recent_rows[2]: must be a mapping",
        "report.charts: unknown field",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert not ReportLayout.objects.exists()


def test_recent_rows_from_the_console_database_with_a_limit_and_times_to_the_second(settings):
    settings.REPORT_TITLE = "OFF-CHAIN HEALTH REPORT"
    for name in ("alpha", "beta", "gamma"):
        Check.objects.create(
            name=name,
            kind="heartbeat",
            config={},
            enabled=name != "beta",
            last_run_at=timezone.now() - timedelta(seconds=5, microseconds=123456),
        )
    document = {
        "report": {
            "recent_rows": [
                {
                    "title": "RECENT CHECKS",
                    "database": "default",
                    "sql": "SELECT name, enabled, last_run_at FROM monitoring_check ORDER BY name;",
                    "columns": ["Check", "Enabled", "Last run"],
                    "limit": 2,
                }
            ]
        }
    }
    from monitoring.checks.checkfile import apply_document

    apply_document(validate_document(document))
    report = build_report()
    section = sections_of(report.text)["rows"]
    assert section[0] == "📈 RECENT CHECKS" and section[2].split() == [
        "Check",
        "Enabled",
        "Last",
        "run",
    ]
    assert [line.split()[0] for line in section[4:]] == ["alpha", "beta"]
    assert re.fullmatch(r"alpha\s+(1|✅)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", section[4])
    assert report.text.splitlines()[1] == "OFF-CHAIN HEALTH REPORT"


def test_a_stored_query_that_writes_is_refused_and_the_report_still_builds():
    # A layout stored directly (an older console, a hand edit) skips the load-time screen:
    # the read-only connection is what refuses the write.
    Check.objects.create(name="keep-me", kind="heartbeat", config={})
    ReportLayout.store(
        {
            "recent_rows": [
                {
                    "title": "VANDAL",
                    "sql": "DELETE FROM monitoring_check",
                    "target": {},
                    "columns": [],
                    "limit": 5,
                    "statement_timeout": 5.0,
                }
            ]
        }
    )
    report = build_report()
    assert Check.objects.filter(name="keep-me").exists()
    rows = next(s for s in report.sections if s["kind"] == "rows")
    # PostgreSQL refuses it as a write; SQLite already at parsing, as the row limit puts the
    # statement inside a SELECT, where a DELETE cannot stand.
    assert rows["status"] == "critical" and rows["error"].startswith("query failed: ")
    assert "📈 VANDAL" in report.text and "❌ query failed: " in report.text
    assert Report.objects.count() == 1
