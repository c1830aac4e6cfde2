"""Log formatters and the job context that every log line carries."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from opsconsole.redaction import redact, redact_value, scoped_secrets

# An immutable default: every change sets a new mapping, so contexts never leak into each other.
_job_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "opsconsole_job_context", default=MappingProxyType({})
)

# Attributes of every LogRecord; anything else passed through ``extra=`` is context.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def current_job_context() -> dict[str, Any]:
    return dict(_job_context.get())


@contextlib.contextmanager
def job_context(**fields: Any) -> Iterator[None]:
    """Adds fields (job_id, job_name, phase, batch_id, check, progress) to every line logged inside."""
    merged = {**_job_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _job_context.set(merged)
    try:
        yield
    finally:
        _job_context.reset(token)


def enter_job_context(**fields: Any) -> contextvars.Token:
    """Like ``job_context`` for code that cannot use a ``with`` block (signal pairs); pass the
    token to ``exit_job_context``."""
    return _job_context.set(
        {**_job_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    )


def exit_job_context(token: contextvars.Token) -> None:
    _job_context.reset(token)


class JobTrail:
    """What a job reports on its finish line: ``trail.count(checks=3, failed=1)``."""

    def __init__(self) -> None:
        self.counts: dict[str, Any] = {}

    def count(self, **counts: Any) -> None:
        self.counts.update(counts)


_jobs_logger = logging.getLogger("opsconsole.jobs")


@contextlib.contextmanager
def job_run(job_name: str, **fields: Any) -> Iterator[JobTrail]:
    """One run of a job that cron (or a person) starts: a fresh ``job_id`` on every line logged
    inside, a ``job started`` line, and a ``job finished`` line with the counts and the
    duration, or ``job failed`` at ERROR with the error and traceback. Without these a cron
    reader cannot tell a job that failed from one that never ran, since a quiet job logs nothing.

    ``sys.exit(n)`` inside is an outcome the job reports (``metrics health`` exits 1 on
    warnings): it finishes with ``exit_code``, at WARNING when non-zero.
    """
    trail = JobTrail()
    started = time.monotonic()

    def outcome(phase: str, **extra: Any) -> dict[str, Any]:
        return {
            "phase": phase,
            "counts": trail.counts,
            "duration_seconds": round(time.monotonic() - started, 3),
            **extra,
        }

    with job_context(job_id=uuid.uuid4().hex, job_name=job_name, **fields):
        _jobs_logger.info("job started: %s", job_name, extra={"phase": "started"})
        try:
            yield trail
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            _jobs_logger.log(
                logging.WARNING if code else logging.INFO,
                "job finished: %s (exit code %s)",
                job_name,
                code,
                extra=outcome("finished", exit_code=code),
            )
            raise
        except BaseException as exc:
            _jobs_logger.error(
                "job failed: %s: %s",
                job_name,
                exc,
                exc_info=True,
                extra=outcome("failed"),
            )
            raise
        _jobs_logger.info("job finished: %s", job_name, extra=outcome("finished"))


def update_job_context(**fields: Any) -> None:
    """Changes fields of the current context in place (e.g. progress as a job advances)."""
    _job_context.set({**_job_context.get(), **fields})


def install_record_factory() -> None:
    """Stamps each record with the job context of the moment it is created, so handlers that
    format later (queues, test capture) still see the context the line was logged in."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_stamps_job_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record._job_context = _job_context.get()
        record._secrets = scoped_secrets()
        _redact_message(record)
        return record

    factory._stamps_job_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _secrets_of(record: logging.LogRecord) -> tuple[str, ...]:
    stamped = getattr(record, "_secrets", None)
    return stamped if stamped is not None else scoped_secrets()


def _redact_message(record: logging.LogRecord) -> None:
    """Masks secrets in the record itself, so every handler (and test capture) sees it clean."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is logging's to report, not ours
        return
    clean = redact(message, _secrets_of(record))
    if clean != message:
        record.msg, record.args = clean, ()


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    stamped = getattr(record, "_job_context", None)
    context = dict(stamped if stamped is not None else _job_context.get())
    for key, value in vars(record).items():
        if key not in _RECORD_FIELDS and not key.startswith("_"):
            context[key] = value
    return redact_value(context, _secrets_of(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), _secrets_of(record)),
        }
        line.update(_context_of(record))
        if record.exc_info:
            # Exception texts quote URLs and DSNs (driver errors): masked like the message.
            line["error"] = redact(repr(record.exc_info[1]), _secrets_of(record))
            line["traceback"] = redact(self.formatException(record.exc_info), _secrets_of(record))
        return json.dumps(line, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=UTC).strftime("%H:%M:%S")
        context = " ".join(f"{k}={v}" for k, v in _context_of(record).items())
        text = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if context:
            text += f"  [{context}]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text, _secrets_of(record))
