"""Job context for django-q2 tasks: every line a task logs carries its job id and name, and a
failing task logs its error and traceback at ERROR.

``pre_execute`` and ``post_execute_in_worker`` both fire in the worker process around the task
function, so a context variable set in one is still in place for the other.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from opsconsole.logging import enter_job_context, exit_job_context

logger = logging.getLogger("opsconsole.tasks")

_tokens: list[Any] = []


def _job_name(task: dict[str, Any]) -> str:
    func = task.get("func")
    if callable(func):
        func = f"{func.__module__}.{func.__qualname__}"
    return str(task.get("name") or func or "task")


def on_pre_execute(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **kwargs: Any
) -> None:
    task = task or {}
    context = {
        "job_id": task.get("id"),
        "job_name": _job_name(task),
        "job_func": task.get("func")
        if isinstance(task.get("func"), str)
        else getattr(func, "__qualname__", None),
        "phase": "started",
    }
    if task.get("group"):
        context["job_group"] = task["group"]
    _tokens.append(enter_job_context(**context))
    logger.info("task started")


def on_post_execute(
    sender: Any = None, func: Any = None, task: dict[str, Any] | None = None, **kwargs: Any
) -> None:
    task = task or {}
    try:
        exc_info = sys.exc_info()
        if exc_info[0] is not None:
            # Synchronous run: the worker re-raises, and the exception is still being handled.
            logger.error(
                "task failed: %s", exc_info[1], exc_info=exc_info, extra={"phase": "failed"}
            )
        elif task.get("success") is False:
            # Worker process: the exception is gone; django-q2 kept "message : traceback".
            result = str(task.get("result") or "")
            error, _, trace = result.partition(" : Traceback")
            extra = {"phase": "failed", "error": error.strip()}
            if trace:
                extra["traceback"] = "Traceback" + trace
            logger.error("task failed: %s", error.strip() or "no error message", extra=extra)
        else:
            logger.info("task finished", extra={"phase": "finished"})
    finally:
        if _tokens:
            exit_job_context(_tokens.pop())


def connect() -> None:
    from django_q.signals import post_execute_in_worker, pre_execute

    pre_execute.connect(on_pre_execute, dispatch_uid="opsconsole-task-context")
    post_execute_in_worker.connect(on_post_execute, dispatch_uid="opsconsole-task-context")
