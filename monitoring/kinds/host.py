"""Kinds that look at this machine: system resources and worker processes."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

import psutil

from monitoring.kinds import CheckKind, ConfigError, Observation, check_known_keys, register
from monitoring.kinds.common import choice, positive_number
from monitoring.models import CheckStatus

if TYPE_CHECKING:
    from monitoring.checks.runner import ProbeContext
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


@register
class ProcessKind(CheckKind):
    """Matching processes: count, memory, CPU and restarts (PID or start-time changes)."""

    name = "process"
    label = "Processes"
    _metrics = ("rss_mb", "cpu", "count", "restarts")

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        check_known_keys(
            config,
            {"name", "cmdline", "metric", "min_count", "restarts_warn", "restarts_crit"},
            errors,
        )
        if not config.get("name") and not config.get("cmdline"):
            errors["config.cmdline"] = "give name (exact process name) or cmdline (a regex)"
        if config.get("cmdline"):
            try:
                re.compile(config["cmdline"])
            except (re.error, TypeError) as exc:
                errors["config.cmdline"] = f"not a valid regular expression: {exc}"
        choice(config, "metric", self._metrics, errors, "rss_mb")
        for key, default in (("min_count", 1), ("restarts_warn", 5), ("restarts_crit", 20)):
            value = config.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                errors[f"config.{key}"] = "must be a whole number ≥ 0"
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
        metric = config.get("metric", "rss_mb")
        return {
            "rss_mb": (3072, 4096, "above"),
            "cpu": (50, 90, "above"),
            "count": (None, None, "below"),
            "restarts": (5, 20, "above"),
        }[metric]

    def unit_for(self, config: dict[str, Any]) -> str:
        return {"rss_mb": " MB", "cpu": " %", "count": "", "restarts": "/h"}[
            config.get("metric", "rss_mb")
        ]

    @staticmethod
    def matching(config: dict[str, Any]) -> list[psutil.Process]:
        name = config.get("name")
        pattern = re.compile(config["cmdline"]) if config.get("cmdline") else None
        me = os.getpid()
        found = []
        for proc in psutil.process_iter(["pid", "name", "cmdline", "create_time"]):
            if proc.pid == me:
                continue
            info = proc.info
            if name and info.get("name") != name:
                continue
            if pattern and not pattern.search(" ".join(info.get("cmdline") or [])):
                continue
            found.append(proc)
        return found

    def observe(self, check: Check, ctx: ProbeContext) -> Observation:
        config = check.config
        now = time.time()
        procs = self.matching(config)
        identities: dict[str, float] = {}
        rss = 0
        cpu_seconds = 0.0
        for proc in procs:
            try:
                with proc.oneshot():
                    identities[str(proc.pid)] = proc.info["create_time"]
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu_seconds += times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue

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
        rss_mb = round(rss / MB, 1)
        details = {
            "count": len(identities),
            "pids": sorted(int(p) for p in identities)[:50],
            "rss_mb": rss_mb,
            "cpu_pct": cpu_pct,
            "restarts_last_hour": len(restarts),
        }
        label = config.get("name") or config.get("cmdline")
        if len(identities) < config.get("min_count", 1):
            return Observation(
                value=0 if config.get("metric") == "count" else None,
                status=CheckStatus.CRITICAL,
                message=f"none running matching {label!r}"
                if not identities
                else f"{len(identities)} running matching {label!r}, expected at least {config['min_count']}",
                details=details,
                state=state,
            )
        restart_status = None
        if len(restarts) > config.get("restarts_crit", 20):
            restart_status = CheckStatus.CRITICAL
        elif len(restarts) > config.get("restarts_warn", 5):
            restart_status = CheckStatus.WARNING
        value = {
            "rss_mb": rss_mb,
            "cpu": cpu_pct,
            "count": len(identities),
            "restarts": len(restarts),
        }[config.get("metric", "rss_mb")]
        message = (
            f"{len(identities)} running, {rss_mb:.0f} MB RSS, CPU {cpu_pct:.1f} %, "
            f"{len(restarts)} restarts in the last hour"
        )
        return Observation(
            value=value, status=restart_status, message=message, details=details, state=state
        )
