"""``manage.py qcluster``: django-q2's worker cluster, made to stop cleanly under a supervisor.

Why a wrapper: django-q2 (1.11) starts its sentinel, pusher, monitor and workers with SIGTERM's
default action. A SIGTERM sent to every process (systemd's default ``KillMode=control-group``,
``timeout``, ``kill -TERM -PGID``) kills the sentinel while it waits on the cluster's stop
event; the main process, handling the same signal, then blocks for ever in ``Event.set()``
(multiprocessing's condition waits for the dead waiter to wake up): it logs "stopping" and
hangs until the supervisor's SIGKILL, and the tasks in flight die half-way.

Here only the main process acts on SIGTERM and SIGINT: it stops the cluster in django-q2's
order (pusher first, then the tasks already taken run to their end, then results are saved),
from the main loop rather than inside the signal handler, and kills what is left after
``QCLUSTER_STOP_TIMEOUT``. The sentinel, pusher and monitor hold SIGTERM blocked; a worker
leaves it to the sentinel to stop it, unless the sentinel's guard is terminating it for a task
past its timeout (its timer is 0), which still ends it at once. SIGKILL still ends everything,
as a crash would.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time
from typing import Any

import psutil
from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand
from django_q.worker import worker

logger = logging.getLogger("opsconsole.qcluster")

# How often the main process looks for a stop request, and the sentinel for its parent.
_POLL_SECONDS = 0.2


class _ClusterSignals:
    """After-fork hook: multiprocessing calls it in every process the cluster forks, before the
    process's target runs (so before django-q2's Sentinel sets SIGTERM back to its default)."""

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid

    def __call__(self, _obj: Any = None) -> None:
        process = multiprocessing.current_process()
        if getattr(process, "_target", None) is worker:
            timer = process._args[2]  # worker(task_queue, result_queue, timer, timeout)
            signal.signal(signal.SIGTERM, _worker_sigterm(timer))
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            return
        # Sentinel (forked by the command), pusher and monitor (forked by the sentinel): they
        # inherit the block, and a signal handler set later does not lift it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        if os.getppid() == self.parent_pid:
            threading.Thread(
                target=_die_with_parent, args=(self.parent_pid,), name="parent-watch", daemon=True
            ).start()


def _worker_sigterm(timer: Any) -> Any:
    def on_sigterm(signum: int, frame: Any) -> None:
        # 0: the sentinel's guard gave up on this worker's task (timeout) and terminates it.
        # Otherwise the signal was meant for the whole cluster: the task in hand finishes, and
        # the sentinel's STOP ends this worker. Read without the lock: the guard holds it.
        if timer.get_obj().value == 0:
            os._exit(1)

    return on_sigterm


def _die_with_parent(parent_pid: int) -> None:
    """In the sentinel: once the command is gone without stopping the cluster (SIGKILL, OOM),
    nothing would ever stop it; it kills its own processes rather than run unsupervised."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    me = psutil.Process()
    for child in me.children(recursive=True):
        child.kill()
    me.kill()


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

        hook = _ClusterSignals(os.getpid())
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
            for process in psutil.Process().children(recursive=True):
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            # Not a normal exit: atexit would join the thread stuck in the cluster's stop.
            os._exit(0)
        logger.info("the cluster stopped in %.1fs", time.monotonic() - started)
