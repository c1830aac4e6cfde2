"""``manage.py qcluster``: django-q2's worker cluster, made to stop cleanly under a supervisor.

Why a wrapper: django-q2 (1.11) starts its sentinel, pusher, monitor and workers in the process
group of the command, with SIGTERM's default action. A SIGTERM sent to the whole group (systemd's
default ``KillMode=control-group``, ``timeout``, ``kill -TERM -PGID``, ``make run``'s Ctrl-C)
kills the sentinel while it waits on the cluster's stop event; the main process, handling the
same signal, then blocks for ever in ``Event.set()`` (multiprocessing's condition waits for the
dead waiter to wake up): it logs "stopping" and hangs until the supervisor's SIGKILL, and the
tasks in flight die half-way.

Here the sentinel and everything under it get a process group of their own, so a signal sent to
this command's group reaches only this process. It stops the cluster in django-q2's order
(pusher first, then the tasks already taken run to their end, then results are saved), from
the main loop rather than inside the signal handler, and kills what is left after
``QCLUSTER_STOP_TIMEOUT``. A sentinel whose parent vanished (SIGKILL) kills its own group.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from typing import Any

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

logger = logging.getLogger("opsconsole.qcluster")

# How often the sentinel looks for its parent, and the main process for a stop request.
_POLL_SECONDS = 0.2


class _SentinelGroup:
    """After-fork hook (multiprocessing calls it in every child it forks): the direct child of
    the command, the sentinel, leaves the command's process group and watches its parent."""

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid

    def __call__(self, _obj: Any = None) -> None:
        # Workers, pusher and monitor are forked by the sentinel: they stay in its group.
        if os.getppid() != self.parent_pid:
            return
        os.setpgid(0, 0)
        threading.Thread(target=self._watch_parent, name="parent-watch", daemon=True).start()

    def _watch_parent(self) -> None:
        while os.getppid() == self.parent_pid:
            time.sleep(1.0)
        # The command is gone without stopping us (SIGKILL, OOM): no one would ever stop the
        # cluster, so it stops itself rather than run unsupervised.
        os.killpg(os.getpgid(0), signal.SIGKILL)


class Command(DjangoQCommand):
    help = (
        "Start the worker cluster (django-q2): Q_WORKERS worker processes that run the queued "
        "tasks and the schedules. SIGTERM or Ctrl-C, to this process or its whole process group, "
        "stops it cleanly: no new task is taken, the tasks already taken finish, and whatever "
        "still runs after QCLUSTER_STOP_TIMEOUT is killed (its task is delivered again)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018 - django-q2 signs tasks with it: fail before starting
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        stop_timeout = float(settings.QCLUSTER_STOP_TIMEOUT)
        requested: list[int] = []

        def request_stop(signum: int, frame: Any) -> None:
            # Only a flag: stopping takes locks that the interrupted code may hold.
            requested.append(signum)

        hook = _SentinelGroup(os.getpid())
        multiprocessing.util.register_after_fork(hook, hook)
        cluster = Cluster()  # installs django-q2's handlers, replaced at once below
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        cluster.start()
        if options.get("run_once"):
            requested.append(0)
        while not requested and cluster.sentinel.is_alive():
            time.sleep(_POLL_SECONDS)
        if not requested:
            logger.error(
                "the cluster's sentinel exited (code %s); stopping", cluster.sentinel.exitcode
            )
            sys.exit(1)
        self._stop(cluster, stop_timeout)

    def _stop(self, cluster: Cluster, stop_timeout: float) -> None:
        started = time.monotonic()
        logger.info("stopping the cluster (at most %gs)", stop_timeout)
        # In a thread, so that a cluster that does not stop cannot keep this process past the
        # timeout (the deadlock described at the top can still happen if a supervisor killed
        # the sentinel itself).
        stopper = threading.Thread(target=cluster.stop, name="cluster-stop", daemon=True)
        stopper.start()
        stopper.join(stop_timeout)
        if stopper.is_alive() or cluster.sentinel.is_alive():
            logger.warning(
                "the cluster did not stop within %gs: killing it; the tasks it was running are "
                "delivered again (ORM broker: after Q_CLUSTER retry) or recovered by the periodic "
                "jobs",
                stop_timeout,
            )
            try:
                os.killpg(cluster.sentinel.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            # Not a normal exit: atexit would join the thread stuck in the cluster's stop.
            os._exit(0)
        logger.info("the cluster stopped in %.1fs", time.monotonic() - started)
