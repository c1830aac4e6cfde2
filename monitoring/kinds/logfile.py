"""The ``logfile`` kind: how long ago a log file was written (``age``) and how many of its lines
matched a regular expression in a window (``matches``, e.g. ``CRITICAL|WARNING`` in 30 min).

Only files under ``LOGFILE_CHECK_ROOTS`` may be read: a check file names any path it likes, and
the console runs with rights an author of checks may not have. The path is resolved (symlinks,
``..``) and held to the roots when the check is loaded and again at every probe, on the file
actually opened, since a symlink can be re-pointed after loading.

``matches`` reads incrementally: the offset, inode and device of the file and per-minute match
counts live in the check's kind-private state. A renamed-away file (rotation) is finished from
where the last run stopped when it is still in the same folder; the new file is read from its
start; a file shorter than the offset (truncated) is read from its start. No run reads more than
``MAX_READ_BYTES``: when more was written since the last run, the middle is skipped and the
message says how much.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from monitoring.kinds import (
    CheckKind,
    ConfigError,
    Observation,
    check_known_keys,
    register,
    require_str,
)
from monitoring.kinds.common import choice, duration
from monitoring.models import CheckStatus
from opsconsole.env import format_duration

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check

MB = 1024 * 1024
# The most one run reads of a log (old file after a rotation and new file together).
MAX_READ_BYTES = 4 * MB
# What ``age`` reads from the end of the file to show its last line.
TAIL_BYTES = 16 * 1024
# Per-minute counts are kept for the window: a day at most keeps the state small.
MAX_WINDOW_SECONDS = 24 * 3600
DEFAULT_WINDOW_SECONDS = 30 * 60
# Matched lines kept to show in the message and details.
RECENT_MATCHES = 5
LINE_EXCERPT = 300
# Bytes before the offset remembered to notice a file rewritten in place.
MARK_BYTES = 32
# Rotated files looked at when searching the old inode in the log's folder.
MAX_ROTATED_CANDIDATES = 200

METRICS = ("age", "matches")
# metric -> (warn, crit, direction, unit). Age as the freshness kind (2 h / 4 h); any match
# is a warning, as in the operations documents' `grep "CRITICAL\|WARNING"`.
DEFAULTS: dict[str, tuple[float | None, float | None, str, str]] = {
    "age": (2 * 3600, 4 * 3600, "above", " s"),
    "matches": (0, None, "above", " lines"),
}

# A timestamp at the start of a line (after a bracket or two): 2025-11-05 19:40:01 or
# 2025-11-05T19:40:01.123Z / +02:00. Used only on a check's first read (see _date_line).
_LINE_TIME_RE = re.compile(
    rb"^\W{0,2}(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,]\d+)?\s?(Z|[+-]\d{2}:?\d{2})?"
)


class OutsideRoots(Exception):
    """A path that resolves outside LOGFILE_CHECK_ROOTS."""


def check_roots() -> list[Path]:
    """The configured roots, resolved; read at use, so a changed setting applies at once."""
    return [Path(os.path.realpath(root)) for root in getattr(settings, "LOGFILE_CHECK_ROOTS", [])]


def _roots_text(roots: list[Path]) -> str:
    return ", ".join(str(root) for root in roots) if roots else "empty: no log file may be read"


def resolve_allowed(path: str) -> Path:
    """``path`` with symlinks and ``..`` resolved; raises OutsideRoots unless it lies under one
    of LOGFILE_CHECK_ROOTS."""
    roots = check_roots()
    resolved = Path(os.path.realpath(path))
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        shown = f"{path} (resolves to {resolved})" if str(resolved) != path else path
        raise OutsideRoots(
            f"{shown} is outside LOGFILE_CHECK_ROOTS ({_roots_text(roots)}); "
            f"add its folder to the LOGFILE_CHECK_ROOTS setting to allow it"
        )
    return resolved


def _opened_path(fd: int, fallback: Path) -> Path:
    # What the descriptor really points at (Linux): a folder on the way may have been swapped
    # for a symlink between resolving the path and opening it.
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return fallback


def _excerpt(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    return text if len(text) <= LINE_EXCERPT else text[: LINE_EXCERPT - 1] + "…"


def _line_time(line: bytes) -> datetime | None:
    """The timestamp a line starts with, or None. Naive times are taken as UTC (the server's
    zone, DESIGN §2)."""
    match = _LINE_TIME_RE.match(line)
    if not match:
        return None
    day, clock, zone = (part.decode() if part else None for part in match.groups())
    text = f"{day}T{clock}"
    if zone:
        text += "+00:00" if zone == "Z" else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class _Reading:
    """What one run found in the bytes it read."""

    budget: int
    read_bytes: int = 0
    skipped_bytes: int = 0
    lines: int = 0
    matched_now: int = 0
    undated_not_counted: int = 0
    notes: list[str] = field(default_factory=list)


class _LogReader:
    """Reads new complete lines of one file from an offset, within the run's byte budget."""

    def __init__(self, pattern: re.Pattern[str], now: datetime, window: float, first: bool):
        self.pattern = pattern
        self.now = now
        self.window = window
        self.first = first
        self.minutes: dict[int, int] = {}
        self.recent: list[dict[str, Any]] = []

    def _count(self, line: bytes, reading: _Reading) -> None:
        reading.lines += 1
        text = line.decode("utf-8", errors="replace")
        if not self.pattern.search(text):
            return
        when = self._date_line(line)
        if when is None:
            reading.undated_not_counted += 1
            return
        minute = int(when.timestamp()) // 60
        self.minutes[minute] = self.minutes.get(minute, 0) + 1
        reading.matched_now += 1
        self.recent.append({"at": when.astimezone(UTC).isoformat(), "line": _excerpt(line)})
        del self.recent[:-RECENT_MATCHES]

    def _date_line(self, line: bytes) -> datetime | None:
        """When a matched line counts. Lines appended since the last run count now: a line's
        own timestamp may be in any zone and is not trusted. On the first read, lines written
        before the check started count only when they carry a timestamp inside the window
        (a few minutes of clock difference allowed); the others cannot be placed."""
        if not self.first:
            return self.now
        stamped = _line_time(line)
        if stamped is None:
            return None
        if self.now - timedelta(seconds=self.window) <= stamped <= self.now + timedelta(minutes=5):
            return min(stamped, self.now)
        return None

    def read(
        self, fd: int, start: int, size: int, reading: _Reading, *, align: bool = False
    ) -> int:
        """Counts the complete lines from ``start`` to ``size`` within the budget; returns the
        offset after the last complete line (a line still being written is read next time).
        ``align``: ``start`` may be inside a line, whose rest is passed over."""
        if size - start > reading.budget:
            # More was written than one run may read: keep up with the newest lines and say
            # how much was passed over, rather than fall further behind every run.
            reading.skipped_bytes += size - reading.budget - start
            start = size - reading.budget
            align = True
        if start >= size or reading.budget <= 0:
            return start
        if align and start > 0 and os.pread(fd, 1, start - 1) == b"\n":
            align = False
        data = os.pread(fd, min(size - start, reading.budget), start)
        reading.read_bytes += len(data)
        reading.budget -= len(data)
        if align:
            newline = data.find(b"\n")
            skipped = len(data) if newline < 0 else newline + 1
            reading.skipped_bytes += skipped
            data, start = data[skipped:], start + skipped
        last_newline = data.rfind(b"\n")
        if last_newline < 0:
            if len(data) >= MAX_READ_BYTES:
                # One line longer than a run may read: counted as a line, and passed.
                self._count(data, reading)
                return start + len(data)
            return start
        for line in data[:last_newline].split(b"\n"):
            self._count(line, reading)
        return start + last_newline + 1


def _mark(fd: int, offset: int) -> str:
    """The bytes just before ``offset``: they must still be there on the next run, or the file
    was rewritten under the same name and inode."""
    return os.pread(fd, min(offset, MARK_BYTES), max(0, offset - MARK_BYTES)).hex()


def _find_rotated(directory: Path, name: str, inode: int, device: int) -> Path | None:
    """The file in ``directory`` that is the old log (same inode and device) after a rename:
    ``app.log.1``, ``app.log-20251105``, ``app.1.log``. None when it is gone or compressed."""
    stem = name.split(".")[0]
    looked = 0
    try:
        entries = os.scandir(directory)
    except OSError:
        return None
    with entries:
        for entry in entries:
            if entry.name == name or not entry.name.startswith(stem):
                continue
            looked += 1
            if looked > MAX_ROTATED_CANDIDATES:
                return None
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_ino == inode and info.st_dev == device and stat.S_ISREG(info.st_mode):
                return Path(entry.path)
    return None


@register
class LogFileKind(CheckKind):
    """A log file under LOGFILE_CHECK_ROOTS: its age, or the lines matching a pattern."""

    name = "logfile"
    label = "Log file"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(config, {"path", "metric", "pattern", "window"}, errors)
        metric = choice(config, "metric", METRICS, errors, "age")
        if "metric" not in config:
            errors["config.metric"] = f"is required: one of {', '.join(METRICS)}"
        normalised = dict(config)
        path = require_str(config, "path", errors)
        if path is not None:
            if not path.startswith("/"):
                errors["config.path"] = f"must be an absolute path, got {path!r}"
            else:
                try:
                    resolve_allowed(path)
                except OutsideRoots as exc:
                    errors["config.path"] = str(exc)
        if metric == "matches":
            pattern = require_str(config, "pattern", errors)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    errors["config.pattern"] = f"not a valid regular expression: {exc}"
            window = duration(config, "window", errors, DEFAULT_WINDOW_SECONDS)
            if window is not None and not 60 <= window <= MAX_WINDOW_SECONDS:
                errors["config.window"] = "must be from 1m to 24h"
            normalised["window"] = window
        else:
            for key in ("pattern", "window"):
                if key in config:
                    errors[f"config.{key}"] = "only used with metric: matches"
        if errors:
            raise ConfigError(errors)
        return normalised

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        warn, crit, direction, _ = DEFAULTS[config.get("metric", "age")]
        return warn, crit, direction

    def unit_for(self, config: dict[str, Any]) -> str:
        return DEFAULTS[config.get("metric", "age")][3]

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        config = check.config
        path = config["path"]
        try:
            resolved = resolve_allowed(path)
        except OutsideRoots as exc:
            return Observation(error=f"refused: {exc}")
        try:
            fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            # Not written yet on a new install, or between a rotation's rename and create:
            # "no data", so a new check's start-up grace applies.
            return Observation(
                status=CheckStatus.CRITICAL, message=f"log file {path} not found", no_data=True
            )
        except OSError as exc:
            return Observation(error=f"cannot open {path}: {exc.strerror}")
        try:
            opened = _opened_path(fd, resolved)
            try:
                resolve_allowed(str(opened))
            except OutsideRoots as exc:
                return Observation(error=f"refused: {exc}")
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return Observation(error=f"{path} is not a regular file")
            if config.get("metric") == "matches":
                return self._matches(check, fd, info, resolved)
            return self._age(fd, info, path)
        finally:
            os.close(fd)

    def _age(self, fd: int, info: os.stat_result, path: str) -> Observation:
        now = timezone.now()
        modified = datetime.fromtimestamp(info.st_mtime, tz=UTC)
        age = (now - modified).total_seconds()
        details: dict[str, Any] = {"modified": modified.isoformat(), "size_bytes": info.st_size}
        if age < 0:
            details["clock_skew_seconds"] = round(-age, 1)
            age = 0.0
        tail = os.pread(fd, min(TAIL_BYTES, info.st_size), max(0, info.st_size - TAIL_BYTES))
        lines = [line for line in tail.split(b"\n") if line.strip()]
        message = (
            f"{path} last written {format_duration(age)} ago ({modified:%Y-%m-%d %H:%M:%S} UTC)"
        )
        if lines:
            details["last_line"] = _excerpt(lines[-1])
            message += f"; last line: {details['last_line'][:120]}"
        elif info.st_size == 0:
            message += "; the file is empty"
        return Observation(value=round(age, 1), message=message, details=details)

    def _matches(self, check: Check, fd: int, info: os.stat_result, resolved: Path) -> Observation:
        config = check.config
        now = timezone.now()
        window = float(config.get("window", DEFAULT_WINDOW_SECONDS))
        previous = (check.state or {}).get("logfile") or {}
        if previous.get("path") != str(resolved) or previous.get("pattern") != config["pattern"]:
            previous = {}
        first = not previous
        reader = _LogReader(re.compile(config["pattern"]), now, window, first)
        reader.minutes = {int(k): int(v) for k, v in (previous.get("minutes") or {}).items()}
        reader.recent = list(previous.get("recent") or [])
        reading = _Reading(budget=MAX_READ_BYTES)
        offset = int(previous.get("offset", 0))

        align = False
        if first:
            # Start near the end: a log's history is not read whole, and its undated lines
            # cannot be placed in the window anyway.
            offset = max(0, info.st_size - MAX_READ_BYTES)
            align = offset > 0
            if align:
                reading.notes.append(f"first read: the last {MAX_READ_BYTES // MB} MB only")
        elif (previous.get("inode"), previous.get("device")) != (info.st_ino, info.st_dev):
            old = _find_rotated(
                resolved.parent, resolved.name, previous["inode"], previous["device"]
            )
            if old is None:
                reading.notes.append("rotated (the rest of the old file was not found)")
            else:
                self._finish_rotated(reader, reading, old, offset)
            offset = 0
        elif info.st_size < offset:
            reading.notes.append(f"truncated (was {offset:,} bytes, now {info.st_size:,})")
            offset = 0
        elif _mark(fd, offset) != previous.get("mark", ""):
            # Same file, not shorter, but what was read last time is gone: truncated and
            # written again past the old offset between two runs.
            reading.notes.append("rewritten since the last run: read from the start")
            offset = 0

        offset = reader.read(fd, offset, info.st_size, reading, align=align)
        if first:
            # Passing over history on the first read is not news about skipped lines.
            reading.skipped_bytes = 0
        if reading.skipped_bytes:
            reading.notes.append(
                f"skipped {reading.skipped_bytes / MB:.1f} MB unread (more than "
                f"{MAX_READ_BYTES // MB} MB written since the last run: "
                "matches there are not counted)"
            )
        if first and reading.undated_not_counted:
            reading.notes.append(
                f"{reading.undated_not_counted} matching lines written before the check "
                "started carry no timestamp in the window and are not counted"
            )

        cutoff = now - timedelta(seconds=window)
        # Whole minutes: the count may include up to a minute more than the window.
        minutes = {m: n for m, n in reader.minutes.items() if m >= int(cutoff.timestamp()) // 60}
        recent = [hit for hit in reader.recent if datetime.fromisoformat(hit["at"]) >= cutoff]
        count = sum(minutes.values())
        pattern = config["pattern"]
        message = (
            f"{count:,} line{'' if count == 1 else 's'} matching {pattern!r} "
            f"in the last {format_duration(window)}"
        )
        if recent:
            message += f"; last: {recent[-1]['line'][:160]}"
        if reading.notes:
            message += " (" + "; ".join(reading.notes) + ")"
        state = {
            "path": str(resolved),
            "pattern": pattern,
            "inode": info.st_ino,
            "device": info.st_dev,
            "offset": offset,
            "mark": _mark(fd, offset),
            "minutes": {str(m): n for m, n in sorted(minutes.items())},
            "recent": recent,
        }
        details = {
            "path": str(resolved),
            "size_bytes": info.st_size,
            "offset": offset,
            "read_bytes": reading.read_bytes,
            "skipped_bytes": reading.skipped_bytes,
            "new_lines": reading.lines,
            "new_matches": reading.matched_now,
            "recent_matches": recent,
        }
        return Observation(value=count, message=message, details=details, state={"logfile": state})

    @staticmethod
    def _finish_rotated(reader: _LogReader, reading: _Reading, old: Path, offset: int) -> None:
        try:
            old_fd = os.open(old, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            reading.notes.append("rotated (the old file could not be opened)")
            return
        try:
            size = os.fstat(old_fd).st_size
            if size < offset:
                offset = 0
            reader.read(old_fd, offset, size, reading)
            reading.notes.append(f"rotated (finished the old file, now {old.name})")
        finally:
            os.close(old_fd)
