"""celery.app.trace's outcome lines through the logging configuration in settings."""

import logging
import sys

from celery.app.trace import LOG_FAILURE, LOG_REJECTED, LOG_RETRY
from celery.exceptions import Reject


def _log_outcome(template: str, exc: Exception, description: str, level: int) -> None:
    """As celery.app.trace.TraceInfo._log_error does (Celery 5.x)."""
    try:
        raise exc
    except Exception:
        exc_info = sys.exc_info()
    context = {
        "hostname": "w@h",
        "id": "t-1",
        "name": "audit.ingest_batch",
        "exc": repr(exc),
        "traceback": "Traceback (most recent call last):\n  ...\n",
        "args": "()",
        "kwargs": "{}",
        "description": description,
        "internal": False,
    }
    logging.getLogger("celery.app.trace").log(
        level, template.strip(), context, exc_info=exc_info, extra={"data": context}
    )


def test_a_rejected_message_is_one_line_without_a_traceback(caplog):
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        _log_outcome(
            LOG_REJECTED, Reject("invalid batch: tenant 99999 does not exist"), "rejected", 30
        )

    [record] = caplog.records
    assert "tenant 99999 does not exist" in record.getMessage()
    assert record.exc_info is None
    assert "traceback" not in record.data


def test_a_failure_keeps_its_traceback_once(caplog):
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        _log_outcome(LOG_FAILURE, RuntimeError("bug"), "raised unexpected", 40)

    [record] = caplog.records
    assert record.exc_info is not None
    assert "traceback" not in record.data
    assert "bug" in record.getMessage()


def test_retries_exhausted_in_an_outage_are_one_line_without_a_traceback(caplog):
    """A 3.5 min database outage dead-lettered 74 batches, each with a ~6 KB stack of the
    same OperationalError."""
    from django.db import OperationalError

    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        _log_outcome(LOG_FAILURE, OperationalError("connection refused"), "raised unexpected", 40)

    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is None
    assert "connection refused" in record.getMessage()


def _log_retry(task_id: str, name: str = "audit.ingest_batch") -> None:
    """As celery.app.trace.TraceInfo.handle_retry does (Celery 5.x)."""
    logging.getLogger("celery.app.trace").info(
        LOG_RETRY,
        {"id": task_id, "name": name, "exc": "Retry in 4s: OperationalError('refused')"},
    )


def test_retry_lines_are_throttled_per_task_name(caplog):
    from traceledger import log_throttle

    log_throttle.reset()
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        for n in range(50):
            _log_retry(f"t-{n}")
        _log_retry("s-1", name="search.index_events")
        _log_outcome(LOG_FAILURE, RuntimeError("bug"), "raised unexpected", 40)

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert "audit.ingest_batch[t-0] retry" in lines[0]
    assert "search.index_events[s-1] retry" in lines[1]
    assert "bug" in lines[2]
