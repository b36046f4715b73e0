"""Celery tasks of the audit app: thin adapters that own only the retry policy.

``audit.ingest_batch`` is the message contract between the API and the worker (see
``docs/ingest-worker.md``). Reliability relies on the settings too: ``task_acks_late``,
``task_reject_on_worker_lost`` and ``task_acks_on_failure_or_timeout=False`` make every
terminal failure a ``basic.reject(requeue=False)``, which RabbitMQ dead-letters to
``audit.ingest.dlq`` (notes §1.2).
"""

import logging
import time

import psycopg.errors
from celery import Task, shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from audit import metrics_worker as metrics
from audit.services.dead_letters import dead_letter_note, events_dead_letter
from audit.services.ingest import InvalidBatch, events_ingest
from traceledger.queues import INGEST_QUEUE_NAME

logger = logging.getLogger(__name__)

# Transient only (STYLE: never Exception). psycopg's serialization failure and deadlock are
# OperationalError subclasses that Django wraps as django.db.OperationalError; they are named
# for when a raw psycopg call escapes Django's wrapper. Everything else is permanent: retrying
# a bad payload only delays the dead letter.
TRANSIENT_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.OperationalError,
    # Publishing a single event's dead letter failed: the retry re-stores nothing (its
    # neighbours are duplicates by then) and publishes the dead letter again.
    BrokerError,
)
# Backoff 1, 2, 4 ... capped at 60 s, full jitter; the default 8 retries wait at most ~4 min
# in total, far below RabbitMQ's 30 min consumer timeout (and the countdown lives in the
# broker's native-delayed-delivery queues, not in the worker).
MAX_RETRIES = settings.TRACELEDGER_INGEST_MAX_RETRIES
CONTRACT_KWARGS = frozenset({"tenant_id", "events", "request_id"})


class IngestTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Retries exhausted (or an unexpected error): the worker rejects the message next.

        RabbitMQ's ``x-death`` only says "rejected", so leave the exception where
        ``drain_dlq`` finds it (Redis, keyed by task id) to give the dead letter a reason.
        """
        if isinstance(exc, Reject):
            return
        retries = self.request.retries or 0
        dead_letter_note(
            task_id=task_id,
            reason=f"failed after {retries} retries: {type(exc).__name__}"[:255],
            exception=f"{type(exc).__name__}: {exc}",
        )


@shared_task(
    base=IngestTask,
    bind=True,
    name="audit.ingest_batch",
    # Needed for retries, not only for routing: with quorum queues a retry's countdown goes
    # through Celery's native delayed delivery, which routes by the *queue's* routing key;
    # without a queue here the router picks task_default_queue ("maintenance") and the retry
    # silently leaves audit.ingest (and its DLX). See docs/ingest-worker.md.
    queue=INGEST_QUEUE_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    # Reject is an Exception too; never let autoretry swallow it (notes §1.3 trap).
    dont_autoretry_for=(Reject,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=240,
    time_limit=300,
)
def ingest_batch(self, *args, **kwargs) -> dict:
    """Store one API request's batch: kwargs ``tenant_id``, ``events``, ``request_id``."""
    started = time.perf_counter()
    unknown = set(kwargs) - CONTRACT_KWARGS
    if args or unknown or "tenant_id" not in kwargs or "events" not in kwargs:
        reason = "message does not follow the audit.ingest_batch contract"
        details = f"positional args: {len(args)}; kwargs: {sorted(kwargs)}"
        _reject(self, reason, details)
    try:
        result = events_ingest(tenant_id=kwargs["tenant_id"], events=kwargs["events"])
    except InvalidBatch as exc:
        _reject(self, f"invalid batch: {exc}", "")
    if result.rejected:
        events_dead_letter(
            tenant_id=kwargs["tenant_id"],
            rejected=result.rejected,
            request_id=kwargs.get("request_id"),
            task_id=self.request.id,
        )
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    return {
        "stored": len(result.stored_ids),
        "duplicates": result.duplicates,
        "dead_lettered": len(result.rejected),
    }


def _reject(task, reason: str, details: str) -> None:
    logger.error("ingest batch %s rejected: %s %s", task.request.id, reason, details)
    dead_letter_note(task_id=task.request.id, reason=reason, exception=details)
    metrics.BATCHES_REJECTED.inc()
    raise Reject(reason, requeue=False)
