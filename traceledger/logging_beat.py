"""celery beat's "Message Error" line, made one line when the broker is what failed.

When a scheduled task cannot be sent, beat logs ``Message Error: %s\\n%s`` with the exception
*and* ``traceback.format_stack()`` as arguments, plus ``exc_info``: about 9 KB per attempt,
every 10 s for the outbox relay while RabbitMQ is down (celery/beat.py, ``apply_entry``).
``BeatSendErrorFilter`` (on the ``celery.beat`` logger, before the outage throttle) rewrites
it to ``Message Error: <the SchedulingError>`` with the schedule ``entry`` as an extra (the
throttle counts each entry apart), and for a broker connection error drops the traceback for
``error`` (the cause's repr), at WARNING: an outage is not a bug. Any other cause keeps its
traceback and its ERROR.
"""

import logging

import amqp.exceptions
import kombu.exceptions

from traceledger.log_throttle import one_line

# What publishing raises when RabbitMQ is down, refusing, cut or blocked: kombu's wrapper,
# socket errors (refused, reset, timed out) and AMQP connection-level errors.
BROKER_CONNECTION_ERRORS = (
    kombu.exceptions.OperationalError,
    OSError,
    amqp.exceptions.ConnectionError,
)

# celery.beat.Scheduler.apply_entry's template (Celery 5.x).
_MESSAGE_ERROR = "Message Error: "


class BeatSendErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_MESSAGE_ERROR) or not record.exc_info:
            return True
        _, exc, tb = record.exc_info
        if exc is None:
            return True
        # apply_entry caught the error, so its frame comes first; its ``entry`` is the
        # ScheduleEntry being sent.
        entry = tb.tb_frame.f_locals.get("entry") if tb is not None else None
        record.entry = getattr(entry, "name", None)
        record.msg, record.args = f"{_MESSAGE_ERROR}%s", (exc,)
        # SchedulingError is raised while handling the send's own error.
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(cause, BROKER_CONNECTION_ERRORS):
            record.error = one_line(cause)
            record.exc_info = None
            record.exc_text = None
            # Expected while RabbitMQ is away, and the next run sends again: a WARNING like
            # the periodic tasks' own "skipped" lines, not an ERROR that pages for a bug.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
