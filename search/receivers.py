"""Receivers of audit's signals. Connected in ``SearchConfig.ready``."""

import logging

from audit.signals import events_ingested

logger = logging.getLogger(__name__)

# Ingest batches hold at most 1,000 events; keep index messages that size even if that changes.
CHUNK = 1000


def enqueue_indexing(
    sender, *, tenant_id: int, event_ids: list, first_sequence: int | None = None, **kwargs
) -> None:
    """Queue the just-committed events for indexing. Never raises into ingestion.

    Runs in the ingest worker after its commit. If RabbitMQ refuses the publish, the events
    are still stored; the periodic sweep indexes them from the high-water mark.
    """
    from search.tasks import index_events

    ids = [str(event_id) for event_id in event_ids]
    for start in range(0, len(ids), CHUNK):
        try:
            first = None if first_sequence is None else first_sequence + start
            index_events.apply_async(
                args=[tenant_id, ids[start : start + CHUNK]],
                kwargs={"first_sequence": first},
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
            )
        except Exception:  # broker down or anything else: ingestion must not notice
            logger.warning(
                "search indexing not queued; the sweep will catch up",
                extra={"tenant_id": tenant_id, "events": len(ids)},
                exc_info=True,
            )


def connect() -> None:
    events_ingested.connect(enqueue_indexing, dispatch_uid="search.enqueue_indexing")
