"""Celery tasks of the search app, all on the ``search.index`` queue. Thin: they call services.

The sweep runs every 30 s anyway: while the database or Elasticsearch is away a run is one
line (at most one per 30 s, without a traceback) and ends normally, instead of Celery's ERROR
with a traceback on every run. The index task retries only while the database is away;
Elasticsearch being away is the sweep's to catch up (``events_index`` logs it). Anything else
is a bug and raises.
"""

import logging

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from search.metrics import INDEX_RETRIES
from search.services import BACKEND_UNAVAILABLE
from traceledger.log_throttle import skipped_run

# Only the sweep's outage lines, throttled per dependency in LOGGING (README, "When a
# dependency fails").
logger = logging.getLogger(__name__)

# Transient only: the database or Elasticsearch being away. Anything else is a bug, and the
# sweep re-indexes from the high-water mark anyway.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
TRANSIENT = (*DATABASE_UNAVAILABLE, *BACKEND_UNAVAILABLE)
# Every series at 0 from the start (search.apps imports this module in every process).
for _error in DATABASE_UNAVAILABLE:
    INDEX_RETRIES.labels(error=_error.__name__)


class IndexTask(Task):
    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        # Counted here: Celery's retry line is logged at most once per 30 s per task name.
        INDEX_RETRIES.labels(error=type(exc).__name__).inc()


@shared_task(
    name="search.index_events",
    queue="search.index",
    base=IndexTask,
    # Not Elasticsearch's outages: events_index leaves those to the sweep once PostgreSQL
    # has the events (a retry would wait on the outage again, holding a worker process).
    autoretry_for=DATABASE_UNAVAILABLE,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def index_events(
    tenant_id: int,
    event_ids: list[str],
    first_sequence: int | None = None,
    request_ids: list[str] | None = None,
) -> int:
    # request_ids: the requests whose events these are. Not used here: the task's log lines
    # carry them (traceledger.request_id binds them before the task runs).
    from search.services import events_index

    return events_index(tenant_id=tenant_id, event_ids=event_ids, first_sequence=first_sequence)


@shared_task(name="search.sweep_index", queue="search.index", time_limit=300, soft_time_limit=240)
def sweep_index() -> dict:
    from search.services import search_sweep

    try:
        return search_sweep()
    except TRANSIENT as exc:
        # search_sweep skips an unavailable backend itself; what reaches here is the database.
        dependency = "search backend" if isinstance(exc, BACKEND_UNAVAILABLE) else "database"
        skipped_run(logger, "search sweep skipped", dependency, exc)
        return {}
