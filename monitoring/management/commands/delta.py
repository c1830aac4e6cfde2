"""``manage.py delta``: what changed in the last seconds (the live delta monitor)."""

from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from monitoring.observability.activity import collect_activity, parse_window
from opsconsole.env import format_duration


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{prefix}{name}."))
        else:
            items.append((f"{prefix}{name}", value))
    return items


def _age(reading: dict[str, Any]) -> str:
    value = reading["value"]
    if value is None:
        return "never measured"
    if reading["unit"] in ("s", ""):
        return format_duration(value)
    return f"{value:g} {reading['unit']}"


def render_compact(data: dict[str, Any]) -> str:
    parts = [f"delta {format_duration(data['window_seconds'])}"]
    for name, values in data["sections"].items():
        fields = " ".join(f"{key}={value}" for key, value in _flatten(values))
        parts.append(f"{name} {fields}".strip())
    if data["freshness"]:
        parts.append(
            "freshness "
            + " ".join(f"{r['check']}={_compact_age(r)}({r['status']})" for r in data["freshness"])
        )
    return " | ".join(parts)


def _compact_age(reading: dict[str, Any]) -> str:
    # An age is one token ("1h5m") to keep the line short; words stay words.
    if reading["value"] is None:
        return _age(reading)
    return _age(reading).replace(" ", "")


def render_full(data: dict[str, Any]) -> str:
    lines = [
        f"Activity in the last {format_duration(data['window_seconds'])} "
        f"({data['since'][:19].replace('T', ' ')} to {data['until'][11:19]} UTC)",
        "",
    ]
    for name, values in data["sections"].items():
        fields = "   ".join(f"{key.replace('_', ' ')} {value}" for key, value in _flatten(values))
        lines.append(f"{name.capitalize():<12}{fields}")
    lines.append("")
    if data["freshness"]:
        lines.append("Freshness")
        for reading in data["freshness"]:
            checked = reading["checked_seconds_ago"]
            when = (
                f"checked {format_duration(checked)} ago" if checked is not None else "not run yet"
            )
            lines.append(
                f"  {reading['check']:<28} {reading['status']:<9} {_age(reading):<10} ({when})"
            )
    else:
        lines.append("Freshness   no freshness checks configured")
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "Show what changed in the last WINDOW (default 30s): backlog entries added, processed "
        "and failed, check runs by status, alerts opened and resolved, batch items finished, and "
        "the freshness of each freshness check. --follow refreshes every WINDOW until Ctrl-C "
        "(SIGINT) or SIGTERM, also when started in the background."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "window",
            nargs="?",
            default="30",
            help="how far back to look: seconds or 30s, 5m, 1h (default 30s)",
        )
        parser.add_argument("--compact", action="store_true", help="one line per refresh")
        parser.add_argument(
            "--follow", action="store_true", help="refresh every WINDOW until Ctrl-C"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            window = parse_window(options["window"])
        except ValueError as exc:
            raise CommandError(f"WINDOW: {exc}") from None
        render = render_compact if options["compact"] else render_full
        if not options["follow"]:
            self.stdout.write(render(collect_activity(window)))
            return
        stopping = {"flag": False}

        def request_stop(signum: int, frame: Any) -> None:
            stopping["flag"] = True

        # Both signals set the flag, whatever they were at start: a shell without job control
        # starts `delta --follow &` with SIGINT ignored (and Python then raises no
        # KeyboardInterrupt), and a supervisor stops it with SIGTERM.
        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not stopping["flag"]:
                close_old_connections()
                self.stdout.write(render(collect_activity(window)))
                if not options["compact"]:
                    self.stdout.write("")
                self.stdout.flush()
                deadline = time.monotonic() + window
                while not stopping["flag"] and time.monotonic() < deadline:
                    time.sleep(
                        min(0.2, deadline - time.monotonic()) if deadline > time.monotonic() else 0
                    )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
