"""This machine's process table, read so that concurrent scans cannot disturb each other.

``psutil.process_iter(attrs)`` hands out ``Process`` objects from one cache shared by the whole
interpreter and writes each one's ``.info`` in place. Two threads scanning at once (a `process`
check beside the `queue` kind's count of local clusters) therefore overwrite each other's
attributes: one reads ``info["create_time"]`` after the other has replaced ``info`` with its own
narrower dict, and the check fails with ``KeyError: 'create_time'``. Every scan here builds its
own ``Process`` objects and reads their attributes into its own dicts; nothing is shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, NamedTuple

import psutil


class ScannedProcess(NamedTuple):
    process: psutil.Process  # this scan's own object, never psutil's shared cache
    info: dict[str, Any]  # the attributes asked for; None where access was denied


def scan_processes(attrs: Iterable[str]) -> list[ScannedProcess]:
    """Every process on this machine except this one, with ``attrs`` (psutil ``as_dict`` names)
    read once. A process that ends during the scan is left out."""
    wanted = list(attrs)
    me = os.getpid()
    found = []
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            process = psutil.Process(pid)
            found.append(ScannedProcess(process, process.as_dict(attrs=wanted)))
        except psutil.NoSuchProcess:  # ended between the listing and the read
            continue
    return found
