"""Receivers of audit's signals (``events_ingested``, ``events_purged``). Connected in
``SearchConfig.ready``."""

import logging

import pybreaker

from audit.signals import PurgeFollowUp, events_ingested, events_purged
from traceledger.log_throttle import one_line
from traceledger.logging_beat import BROKER_CONNECTION_ERRORS

logger = logging.getLogger(__name__)

# Ingest batches hold at most 1,000 events; keep index messages that size even if that changes.
CHUNK = 1000
# A coalesced transaction's chunk may hold the events of many requests; a message names
# at most this many of them (as the publisher's failure line does).
MAX_REQUEST_IDS = 100
# Once a publish has failed, this process's next transactions do not try for this long: the
# sweep (every 30 s) indexes what they store. While RabbitMQ blocks publishers (a memory or
# disk alarm) a try waits twice TRACELEDGER_BROKER_IO_TIMEOUT (for the confirm, then for the
# channel's close), and the worker would spend the alarm waiting instead of draining the
# queue. For the same reason a failed publish is not retried at once.
PUBLISH_PAUSE_SECONDS = 60

index_publish_breaker = pybreaker.CircuitBreaker(
    fail_max=1,
    reset_timeout=PUBLISH_PAUSE_SECONDS,
    name="search-index-publish",
    throw_new_error_on_trip=False,  # the publish's own error, for the one log line
)


def _requests_of(request_ids: list | None, start: int) -> list[str]:
    """The distinct request ids of the events of one chunk, in chain order (at most
    MAX_REQUEST_IDS, as the publisher's line names them)."""
    seen = dict.fromkeys(r for r in (request_ids or [])[start : start + CHUNK] if r)
    return list(seen)[:MAX_REQUEST_IDS]


def enqueue_indexing(
    sender,
    *,
    tenant_id: int,
    event_ids: list,
    first_sequence: int | None = None,
    request_ids: list | None = None,
    **kwargs,
) -> None:
    """Queue the just-committed events for indexing. Never raises into ingestion.

    Runs in the ingest worker after its commit. If RabbitMQ refuses the publish, the events
    are still stored; the periodic sweep indexes them from the high-water mark. Each index
    task carries the ids of the requests whose events it indexes (``request_ids``), so that
    its log lines name them (``traceledger.request_id``).
    """
    from search.tasks import index_events

    ids = [str(event_id) for event_id in event_ids]
    for start in range(0, len(ids), CHUNK):
        first = None if first_sequence is None else first_sequence + start
        try:
            index_publish_breaker.call(
                index_events.apply_async,
                args=[tenant_id, ids[start : start + CHUNK]],
                kwargs={
                    "first_sequence": first,
                    "request_ids": _requests_of(request_ids, start),
                },
                retry=False,
            )
        except pybreaker.CircuitBreakerError:
            return  # paused after a failure; the sweep catches up
        except Exception as exc:  # broker down or anything else: ingestion must not notice
            logger.warning(
                "search indexing not queued (%s); the sweep will catch up, and this process "
                "tries again in %s s",
                one_line(exc),
                PUBLISH_PAUSE_SECONDS,
                extra={"tenant_id": tenant_id, "events": len(ids)},
                # The broker's errors are an outage, told in one line; anything else is a bug.
                exc_info=not isinstance(exc, BROKER_CONNECTION_ERRORS),
            )
            return


def remove_purged(
    sender, *, tenant_id: int, through_sequence: int, **kwargs
) -> list[PurgeFollowUp]:
    """After a retention purge committed: remove the purged events' entries and documents
    (``search.purge``). Never raises into the purge, which is done and signed.

    Runs in the purging process (``manage.py purge_events``), synchronously, so that the
    command can say what was and was not removed. A backend that fails is left to the purge
    sweep, which retries it; the returned follow-ups say so.
    """
    from search.purge import purged_remove

    try:
        results = purged_remove(tenant_id=tenant_id, through_sequence=through_sequence)
    except Exception as exc:  # the database gone right after the commit, or a bug
        logger.error(
            "purged events not removed from the search index, nor recorded for the purge "
            "sweep; run manage.py reindex_search",
            extra={"tenant_id": tenant_id, "through_sequence": through_sequence},
            exc_info=exc,
        )
        return [
            PurgeFollowUp(
                message=(
                    f"search: the purged events' search entries and documents (sequences up "
                    f"to {through_sequence}) were NOT removed ({one_line(exc)}); run "
                    "`manage.py reindex_search`, which removes them"
                ),
                done=False,
            )
        ]
    return [PurgeFollowUp(message=result.message(), done=result.done) for result in results]


def connect() -> None:
    events_ingested.connect(enqueue_indexing, dispatch_uid="search.enqueue_indexing")
    events_purged.connect(remove_purged, dispatch_uid="search.remove_purged")
