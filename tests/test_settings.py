"""Configuration from the environment: strict parsing, safe defaults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from opsconsole.env import format_duration, parse_database_url, parse_duration
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86400),
        ("100ms", 0.1),
        (45, 45),
        ("2.5s", 2.5),
        ("90", 90),
    ],
)
def test_durations_accept_seconds_and_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 minutes", "", "-3s", "1w", True, None, -1])
def test_durations_refuse_other_forms(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_is_short_and_readable():
    assert [format_duration(s) for s in (5, 125, 3600 + 1800, 2 * 86400 + 3600)] == [
        "5s",
        "2m 5s",
        "1h 30m",
        "2d 1h",
    ]


def test_database_urls():
    pg = parse_database_url("postgres://ops:p%40ss@db.internal:6543/console?sslmode=require")
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "console",
        "ops",
        "p@ss",
        "db.internal",
        "6543",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    sqlite = parse_database_url("sqlite:////var/lib/ops/db.sqlite3")
    assert sqlite["NAME"] == "/var/lib/ops/db.sqlite3"
    assert sqlite["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in sqlite["OPTIONS"]["init_command"]


def _start(env_overrides: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        {"DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "opsconsole.settings"},
        **env_overrides,
    )
    # Started as the web server starts (the WSGI module), which prepares the data folder.
    code = "import opsconsole.wsgi; from django.conf import settings; print(settings.DEBUG, settings.CHECKS_MAX_CONCURRENCY)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("CHECKS_MAX_CONCURRENCY", "fifty"),
        ("CHECKS_MAX_CONCURRENCY", "0"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("REDIS_URL", "localhost:6379"),
        ("LOG_FORMAT", "xml"),
        ("SECRET_KEY", "short"),
        ("BATCH_EXECUTOR_DELAY", "soon"),
        ("BACKLOG_HANDLERS", "{not json"),
    ],
)
def test_a_malformed_variable_stops_start_up_naming_it(variable, value, tmp_path):
    result = _start({variable: value}, tmp_path)
    assert result.returncode != 0
    assert variable in result.stderr


def test_defaults_are_safe(tmp_path):
    result = _start({}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "50"]
    # Without SECRET_KEY a per-installation development key is generated, never a fixed one.
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50


def test_settings_run_in_utc():
    from django.conf import settings

    assert settings.TIME_ZONE == "UTC" and settings.USE_TZ
