"""celery.app.trace's line for a task outcome, without the traceback written twice.

Celery logs a task's failure or rejection with ``exc_info`` *and* the formatted traceback in
``extra={"data": …}``, so the JSON handler wrote the stack twice (~3 KB for one poison
message). ``TaskOutcomeFilter`` (on the ``celery.app.trace`` logger) drops the copy in
``data``. A rejection (``Reject``: an ingest message that breaks the contract, dead-lettered
by design, whose reason ``audit.tasks`` logs) keeps no traceback at all: it is an expected
outcome, not a bug; so does a failure whose cause is a dependency outage (retries exhausted
while PostgreSQL or RabbitMQ was away: 74 of them wrote 440 KB of identical stacks in a
3.5 min database outage). Any other failure keeps its ``exc_info``.

``RetryThrottleFilter``: Celery's INFO line for each retry (``Task …[id] retry: Retry in
Ns: OperationalError(…)``), one per message per retry, 1,482 lines in the same outage: at
most one per task name per 30 s, counting the ones it stands for.
"""

import logging

import psycopg
from celery.app.trace import LOG_RETRY
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from traceledger.log_throttle import ThrottleFilter

OUTAGES = (OperationalError, InterfaceError, psycopg.OperationalError, BrokerError)


class TaskOutcomeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict) and "traceback" in data:
            # A copy: Celery passes the same dict as the message's format arguments.
            record.data = {key: value for key, value in data.items() if key != "traceback"}
            exc = record.exc_info[1] if record.exc_info else None
            if data.get("description") == "rejected" or isinstance(exc, OUTAGES):
                record.exc_info = None
                record.exc_text = None
        return True


class RetryThrottleFilter(ThrottleFilter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != LOG_RETRY:
            return True
        return super().filter(record)

    def kind_of(self, record: logging.LogRecord) -> tuple:
        args = record.args if isinstance(record.args, dict) else {}
        return (*super().kind_of(record), args.get("name"))
