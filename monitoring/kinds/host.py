"""Kinds that look at this machine: system resources and worker processes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from django.conf import settings
from django.utils import timezone

from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import choice, positive_number
from monitoring.models import SEVERITY_RANK, CheckStatus, Direction, worst
from monitoring.observability.processes import ScannedProcess, scan_processes
from opsconsole.env import format_duration

if TYPE_CHECKING:
    from monitoring.checks.prober import ProbeContext
    from monitoring.models import Check

MB = 1024 * 1024

# metric -> (warn, crit, direction, unit); defaults from the operations documents.
SYSTEM_METRICS: dict[str, tuple[float | None, float | None, str, str]] = {
    "cpu": (80, 90, "above", " %"),
    "memory": (85, 95, "above", " %"),
    "disk": (90, 95, "above", " %"),
    "swap": (50, 80, "above", " %"),
    "load": (None, None, "above", ""),  # defaults depend on the core count, see below
    "free_memory_mb": (None, 200, "below", " MB"),
}

# Metrics whose default warning threshold an operations document's variable sets.
ALERT_THRESHOLD_SETTINGS = {
    "cpu": "CPU_ALERT_THRESHOLD",
    "memory": "MEMORY_ALERT_THRESHOLD",
    "disk": "DISK_ALERT_THRESHOLD",
}


def alert_threshold(setting: str, crit: float) -> tuple[float, float]:
    """(warn, crit) of a percentage whose warning comes from ``setting`` (read now, so a check
    made before a change follows it): the critical default stays, raised to the warning when
    the warning is above it, since a warning may not lie beyond the critical threshold."""
    warn = float(getattr(settings, setting))
    return warn, max(float(crit), warn)


@register
class SystemKind(CheckKind):
    name = "system"
    label = "Host resources"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(config, {"metric", "path", "sample_seconds"}, errors)
        metric = choice(config, "metric", tuple(SYSTEM_METRICS), errors, "cpu")
        if "metric" not in config:
            errors["config.metric"] = f"is required: one of {', '.join(SYSTEM_METRICS)}"
        if metric == "disk":
            path = config.get("path", "/")
            if not isinstance(path, str) or not path.startswith("/"):
                errors["config.path"] = "must be an absolute path"
        positive_number(config, "sample_seconds", errors, 0.5)
        if errors:
            raise ConfigError(errors)
        return dict(config)

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        metric = config.get("metric", "cpu")
        warn, crit, direction, _ = SYSTEM_METRICS[metric]
        if metric == "load":
            cores = psutil.cpu_count() or 1
            return float(cores), float(cores * 2), "above"
        if metric in ALERT_THRESHOLD_SETTINGS:
            warn, crit = alert_threshold(ALERT_THRESHOLD_SETTINGS[metric], crit)
        return warn, crit, direction

    def unit_for(self, config: dict[str, Any]) -> str:
        return SYSTEM_METRICS[config.get("metric", "cpu")][3]

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        metric = check.config["metric"]
        if metric == "cpu":
            sample = min(float(check.config.get("sample_seconds", 0.5)), check.timeout_seconds / 2)
            value = psutil.cpu_percent(interval=sample)
            return Observation(
                value=value, message=f"CPU {value:.1f} %", details={"cores": psutil.cpu_count()}
            )
        if metric == "memory":
            mem = psutil.virtual_memory()
            return Observation(
                value=mem.percent,
                message=f"memory {mem.percent:.1f} % used, {mem.available // MB} MB available",
                details={"total_mb": mem.total // MB, "available_mb": mem.available // MB},
            )
        if metric == "free_memory_mb":
            mem = psutil.virtual_memory()
            free = mem.available // MB
            return Observation(value=free, message=f"{free} MB available of {mem.total // MB} MB")
        if metric == "swap":
            swap = psutil.swap_memory()
            return Observation(
                value=swap.percent,
                message=f"swap {swap.percent:.1f} % used",
                details={"total_mb": swap.total // MB},
            )
        if metric == "load":
            one, five, fifteen = os.getloadavg()
            return Observation(
                value=round(one, 2),
                message=f"load {one:.2f} {five:.2f} {fifteen:.2f} on {psutil.cpu_count()} cores",
                details={"load5": five, "load15": fifteen, "cores": psutil.cpu_count()},
            )
        path = check.config.get("path", "/")
        try:
            usage = psutil.disk_usage(path)
        except OSError as exc:
            return Observation(error=f"cannot read disk usage of {path}: {exc}")
        return Observation(
            value=usage.percent,
            message=f"disk {path} {usage.percent:.1f} % used, {usage.free // (1024 * MB)} GB free",
            details={"path": path, "total_gb": round(usage.total / (1024 * MB), 1)},
        )


# metric -> (warn, crit, direction, unit); defaults from the operations documents (seed 004's
# performance baselines: memory > 3 GB / > 4 GB, CPU > 50 % / > 90 %, uptime < 6 h / < 1 h).
PROCESS_METRICS: dict[str, tuple[float | None, float | None, str, str]] = {
    "rss_mb": (3072, 4096, "above", " MB"),
    "cpu": (50, 90, "above", " %"),
    "count": (None, None, "below", ""),
    "restarts": (5, 20, "above", "/h"),
    "uptime": (6 * 3600, 3600, "below", " s"),
}
SCOPE_KEYS = ("cwd", "env", "user", "pidfile")
# Processes named one by one in the message; the rest are counted ("and 12 more").
LISTED_PROCESSES = 10


def _validate_scope(scope: Any, errors: dict[str, str]) -> None:
    if not isinstance(scope, dict) or not scope:
        errors["config.scope"] = f"must be a mapping with one or more of {', '.join(SCOPE_KEYS)}"
        return
    unknown = sorted(str(key) for key in scope if key not in SCOPE_KEYS)
    if unknown:
        errors["config.scope"] = (
            f"unknown setting {', '.join(unknown)}; allowed: {', '.join(SCOPE_KEYS)}"
        )
    for key in ("cwd", "pidfile"):
        value = scope.get(key)
        if key in scope and (not isinstance(value, str) or not value.startswith("/")):
            errors[f"config.scope.{key}"] = f"must be an absolute path, got {value!r}"
    user = scope.get("user")
    if "user" in scope and (not isinstance(user, str) or not user.strip()):
        errors["config.scope.user"] = f"must be a user name or a numeric user id, got {user!r}"
    env = scope.get("env")
    if "env" in scope and (
        not isinstance(env, dict)
        or not env
        or not all(
            isinstance(name, str) and name and "=" not in name and isinstance(value, str)
            for name, value in env.items()
        )
    ):
        errors["config.scope.env"] = (
            "must map environment variable names to text values, e.g. {OPSCONSOLE_SITE: prod}"
        )


def _scope_text(scope: dict[str, Any]) -> str:
    parts = []
    if "cwd" in scope:
        parts.append(f"cwd {scope['cwd']}")
    if "user" in scope:
        parts.append(f"user {scope['user']}")
    parts.extend(f"env {name}={value}" for name, value in (scope.get("env") or {}).items())
    if "pidfile" in scope:
        parts.append(f"pidfile {scope['pidfile']}")
    return ", ".join(parts)


def _pidfile_tree(path: str) -> tuple[set[int], str]:
    """(the PID in ``path`` and its descendants, a note when there are none). A missing file is
    an installation that is not running; a file without a PID raises ValueError."""
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        return set(), "pidfile not found"
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read pidfile {path}: {exc}") from None
    first = text.split()[0] if text else ""
    if not first.isdigit() or int(first) <= 0:
        raise ValueError(f"pidfile {path} does not hold a PID (got {text[:40]!r})")
    pid = int(first)
    try:
        # A cluster's workers are its children: the pidfile names only the main process.
        return {pid} | {child.pid for child in psutil.Process(pid).children(recursive=True)}, ""
    except psutil.NoSuchProcess:
        return set(), f"pidfile's process {pid} is not running"


def _in_scope(proc: psutil.Process, scope: dict[str, Any], pids: set[int] | None) -> bool:
    """Whether a process belongs to the scope; one whose details cannot be read does not (it
    cannot be shown to be ours, and another user's processes are not this installation)."""
    if pids is not None and proc.pid not in pids:
        return False
    try:
        user = scope.get("user")
        if user and proc.username() != user and str(proc.uids().real) != user:
            return False
        if scope.get("cwd"):
            root = os.path.realpath(scope["cwd"])
            cwd = proc.cwd()
            if cwd != root and not cwd.startswith(root.rstrip("/") + "/"):
                return False
        if scope.get("env"):
            environ = proc.environ()
            if any(environ.get(name) != value for name, value in scope["env"].items()):
                return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True


@register
class ProcessKind(CheckKind):
    """Matching processes: count, memory, CPU, restarts (PID or start-time changes) and uptime,
    optionally limited to this installation's processes (``scope``)."""

    name = "process"
    label = "Processes"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(
            config,
            {"name", "cmdline", "metric", "min_count", "restarts_warn", "restarts_crit", "scope"},
            errors,
        )
        if not config.get("name") and not config.get("cmdline"):
            errors["config.cmdline"] = "give name (exact process name) or cmdline (a regex)"
        if config.get("cmdline"):
            try:
                re.compile(config["cmdline"])
            except (re.error, TypeError) as exc:
                errors["config.cmdline"] = f"not a valid regular expression: {exc}"
        choice(config, "metric", tuple(PROCESS_METRICS), errors, "rss_mb")
        for key, default in (("min_count", 1), ("restarts_warn", 5), ("restarts_crit", 20)):
            value = config.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                errors[f"config.{key}"] = "must be a whole number ≥ 0"
        if "scope" in config:
            _validate_scope(config["scope"], errors)
        if errors:
            raise ConfigError(errors)
        return {
            "metric": "rss_mb",
            "min_count": 1,
            "restarts_warn": 5,
            "restarts_crit": 20,
            **config,
        }

    def default_thresholds(self, config: dict[str, Any]) -> tuple[float | None, float | None, str]:
        warn, crit, direction, _ = PROCESS_METRICS[config.get("metric", "rss_mb")]
        return warn, crit, direction

    def unit_for(self, config: dict[str, Any]) -> str:
        return PROCESS_METRICS[config.get("metric", "rss_mb")][3]

    @staticmethod
    def matching(config: dict[str, Any]) -> tuple[list[ScannedProcess], int, str]:
        """(processes matching the name / command line within the scope, how many more match
        outside it, a note about the scope). Raises ValueError for an unreadable pidfile."""
        name = config.get("name")
        pattern = re.compile(config["cmdline"]) if config.get("cmdline") else None
        scope = config.get("scope") or {}
        pids, note = _pidfile_tree(scope["pidfile"]) if scope.get("pidfile") else (None, "")
        found, outside = [], 0
        for scanned in scan_processes(["name", "cmdline", "create_time"]):
            proc, info = scanned
            if name and info.get("name") != name:
                continue
            if pattern and not pattern.search(" ".join(info.get("cmdline") or [])):
                continue
            if info.get("create_time") is None:  # no start time, no identity to follow
                continue
            if scope and not _in_scope(proc, scope, pids):
                outside += 1
                continue
            found.append(scanned)
        return found, outside, note

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        config = check.config
        now = timezone.now().timestamp()
        try:
            procs, outside, scope_note = self.matching(config)
        except ValueError as exc:  # the scope's pidfile holds no PID or cannot be read
            return Observation(error=str(exc))
        identities: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        rss = 0
        cpu_seconds = 0.0
        for proc, info in procs:
            try:
                with proc.oneshot():
                    memory = proc.memory_info().rss
                    times = proc.cpu_times()
                    status = proc.status()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            identities[str(proc.pid)] = info["create_time"]
            rss += memory
            cpu_seconds += times.user + times.system
            rows.append(
                {
                    "pid": proc.pid,
                    "status": status,
                    "uptime_seconds": round(max(0.0, now - info["create_time"])),
                    "rss_mb": round(memory / MB, 1),
                }
            )
        rows.sort(key=lambda row: row["pid"])

        previous = check.state or {}
        seen_before: dict[str, float] = previous.get("processes", {})
        restarts: list[float] = [t for t in previous.get("restart_times", []) if t > now - 3600]
        if seen_before:
            # A process we knew that is gone, or whose PID now belongs to a newer process,
            # counts as one restart when something new is running in its place.
            vanished = [
                pid for pid, started in seen_before.items() if identities.get(pid) != started
            ]
            appeared = [
                pid for pid, started in identities.items() if seen_before.get(pid) != started
            ]
            restarts.extend([now] * min(len(vanished), len(appeared)))

        cpu_pct = 0.0
        # CPU % from the CPU time used since the last run, only over the same processes.
        if previous.get("sampled_at") and identities and identities == seen_before:
            elapsed = now - previous["sampled_at"]
            if elapsed > 0 and cpu_seconds >= previous["cpu_seconds"]:
                cpu_pct = round((cpu_seconds - previous["cpu_seconds"]) * 100 / elapsed, 1)
        state = {
            # While nothing runs, remember what ran last, so the next start counts as a restart.
            "processes": identities or seen_before,
            "restart_times": restarts,
            "cpu_seconds": cpu_seconds,
            "sampled_at": now,
        }
        count = len(identities)
        rss_mb = round(rss / MB, 1)
        # The youngest process: the one that started (or restarted) last.
        uptime = min((row["uptime_seconds"] for row in rows), default=None)
        details: dict[str, Any] = {
            "count": count,
            "pids": [row["pid"] for row in rows][:50],
            "rss_mb": rss_mb,
            "cpu_pct": cpu_pct,
            "restarts_last_hour": len(restarts),
            "uptime_seconds": uptime,
            "processes": rows[:50],
        }
        scope = config.get("scope") or {}
        if scope:
            details["outside_scope"] = outside

        metric = config.get("metric", "rss_mb")
        measured = {
            "rss_mb": rss_mb,
            "cpu": cpu_pct,
            "count": count,
            "restarts": len(restarts),
            "uptime": uptime,
        }
        value = (
            measured[metric] if count >= config.get("min_count", 1) or metric == "count" else None
        )
        reasons = self._reasons(check, metric, value, count, len(restarts), outside, scope_note)
        summary = self._summary(count, rss_mb, cpu_pct, len(restarts), uptime, rows)
        if not reasons:
            message = summary
        else:
            message = "; ".join(text for _, text in reasons)
            if count:
                message = f"{message} ({summary})"
        return Observation(
            value=value,
            status=worst(*(level for level, _ in reasons)) if reasons else None,
            message=message,
            details=details,
            state=state,
        )

    def _reasons(
        self,
        check: Check,
        metric: str,
        value: float | None,
        count: int,
        restarts: int,
        outside: int,
        scope_note: str,
    ) -> list[tuple[str, str]]:
        """What was crossed, worst first, each naming its threshold or rule. The kind sets its
        own status here, so Check.evaluate adds no threshold note of its own: the kind does."""
        config = check.config
        reasons: list[tuple[str, str]] = []
        label = repr(config.get("name") or config.get("cmdline"))
        scope = config.get("scope") or {}
        if scope:
            extra = [
                note for note in (scope_note, f"{outside} outside it" if outside else "") if note
            ]
            label += f" within {_scope_text(scope)}" + (f" ({', '.join(extra)})" if extra else "")
        minimum = config.get("min_count", 1)
        if count < minimum:
            reasons.append(
                (
                    CheckStatus.CRITICAL,
                    f"none running matching {label}"
                    if not count
                    else f"{count} running matching {label}, "
                    f"below the minimum {minimum} (min_count)",
                )
            )
        threshold = None
        level = check.threshold_status(value)
        # Too few running is already named against min_count above when that is what failed.
        if level != CheckStatus.OK and not (metric == "count" and count < minimum):
            warn, crit, direction = check.thresholds()
            limit = crit if level == CheckStatus.CRITICAL else warn
            word = "below" if direction == Direction.BELOW else "above"
            threshold = (
                level,
                f"{self._describe(metric, value, count)}, "
                f"{word} {level} threshold {self._amount(metric, limit)}",
            )
        rule = None
        for level, key, default in (
            (CheckStatus.CRITICAL, "restarts_crit", 20),
            (CheckStatus.WARNING, "restarts_warn", 5),
        ):
            if restarts > config.get(key, default):
                limit = config.get(key, default)
                rule = (level, f"{restarts} restarts in the last hour, above {level} {limit}")
                break
        if metric == "restarts" and threshold and rule:
            # One figure judged twice (thresholds and restarts_warn / _crit): name the worse.
            rank = SEVERITY_RANK
            threshold, rule = (
                (threshold, None) if rank[threshold[0]] >= rank[rule[0]] else (None, rule)
            )
        reasons.extend(reason for reason in (threshold, rule) if reason)
        return sorted(reasons, key=lambda reason: -SEVERITY_RANK[CheckStatus(reason[0])])

    @staticmethod
    def _describe(metric: str, value: float | None, count: int) -> str:
        if metric == "rss_mb":
            return f"{value:.0f} MB RSS"
        if metric == "cpu":
            return f"CPU {value:.1f} %"
        if metric == "count":
            return f"{value:g} running"
        if metric == "restarts":
            return f"{value:g} restarts in the last hour"
        return f"{'youngest ' if count > 1 else ''}up {format_duration(value or 0)}"

    def _amount(self, metric: str, limit: float | None) -> str:
        if metric == "uptime":
            return format_duration(limit or 0)
        return f"{limit:g}{PROCESS_METRICS[metric][3]}"

    @staticmethod
    def _summary(
        count: int,
        rss_mb: float,
        cpu_pct: float,
        restarts: int,
        uptime: float | None,
        rows: list[dict[str, Any]],
    ) -> str:
        parts = [
            f"{count} running",
            f"{rss_mb:.0f} MB RSS",
            f"CPU {cpu_pct:.1f} %",
            f"{restarts} restarts in the last hour",
        ]
        if uptime is not None:
            parts.append(f"{'youngest ' if count > 1 else ''}up {format_duration(uptime)}")
        summary = ", ".join(parts)
        # Each process's state (running, sleeping, stopped, zombie, ...) and its own uptime.
        listing = ", ".join(
            f"pid {row['pid']} {row['status']} up {format_duration(row['uptime_seconds'])}"
            for row in rows[:LISTED_PROCESSES]
        )
        if len(rows) > LISTED_PROCESSES:
            listing += f" and {len(rows) - LISTED_PROCESSES} more"
        return f"{summary}; {listing}" if listing else summary
