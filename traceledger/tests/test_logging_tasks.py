"""celery.app.trace's outcome lines through the logging configuration in settings."""

import logging
import sys

from celery.app.trace import LOG_FAILURE, LOG_REJECTED
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
