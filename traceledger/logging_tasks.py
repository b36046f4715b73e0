"""celery.app.trace's line for a task outcome, without the traceback written twice.

Celery logs a task's failure or rejection with ``exc_info`` *and* the formatted traceback in
``extra={"data": …}``, so the JSON handler wrote the stack twice (~3 KB for one poison
message). ``TaskOutcomeFilter`` (on the ``celery.app.trace`` logger) drops the copy in
``data``. A rejection (``Reject``: an ingest message that breaks the contract, dead-lettered
by design, whose reason ``audit.tasks`` logs) keeps no traceback at all: it is an expected
outcome, not a bug. A failure keeps its ``exc_info``.
"""

import logging


class TaskOutcomeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict) and "traceback" in data:
            # A copy: Celery passes the same dict as the message's format arguments.
            record.data = {key: value for key, value in data.items() if key != "traceback"}
            if data.get("description") == "rejected":
                record.exc_info = None
                record.exc_text = None
        return True
