"""Celery tasks of the search app, all on the ``search.index`` queue. Thin: they call services."""

import pybreaker
from celery import shared_task
from django.db import InterfaceError, OperationalError
from elastic_transport import TransportError

from search.backends.elasticsearch import BulkIndexError

# Transient only: the database or Elasticsearch being away. Anything else is a bug, and the
# sweep re-indexes from the high-water mark anyway.
TRANSIENT = (
    OperationalError,
    InterfaceError,
    TransportError,
    BulkIndexError,
    pybreaker.CircuitBreakerError,
)


@shared_task(
    name="search.index_events",
    queue="search.index",
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
)
def index_events(tenant_id: int, event_ids: list[str], first_sequence: int | None = None) -> int:
    from search.services import events_index

    return events_index(tenant_id=tenant_id, event_ids=event_ids, first_sequence=first_sequence)


@shared_task(name="search.sweep_index", queue="search.index", time_limit=300, soft_time_limit=240)
def sweep_index() -> dict:
    from search.services import search_sweep

    return search_sweep()
