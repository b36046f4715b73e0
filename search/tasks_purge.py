"""Periodic search job: the purge sweep (queue ``search.index``, scheduled in settings).

Not in ``search/tasks.py``, so that Celery's autodiscovery misses it: ``SearchConfig.ready``
imports it. Thin: ``search.purge.purge_sweep`` retries what retention purges left in the
index. While PostgreSQL is away a run is one line and ends normally; the next run retries.
"""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from traceledger.log_throttle import skipped_run

# Only the job's outage lines, throttled per dependency in LOGGING.
logger = logging.getLogger(__name__)


@shared_task(name="search.purge_sweep", queue="search.index", time_limit=300, soft_time_limit=240)
def purge_sweep() -> dict:
    """Safe to run twice: removing what is already gone removes nothing."""
    from search.purge import purge_sweep as sweep

    try:
        return sweep()
    except (OperationalError, InterfaceError) as exc:
        skipped_run(logger, "search purge sweep skipped", "database", exc)
        return {}
