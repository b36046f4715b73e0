"""Celery tasks of the audit app: thin adapters that own only the retry policy.

``audit.ingest_batch`` is the message contract between the API and the worker (see
``docs/ingest-worker.md``). Reliability relies on the settings too: ``task_acks_late``,
``task_reject_on_worker_lost`` and ``task_acks_on_failure_or_timeout=False`` make every
terminal failure a ``basic.reject(requeue=False)``, which RabbitMQ dead-letters to
``audit.ingest.dlq`` (notes §1.2).
"""

import logging
import random
import time
from collections.abc import Callable

import psycopg.errors
from celery import Task, shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from audit import metrics_worker as metrics
from audit.coalescer import Extra, coalesce_limits, coalescer, contract_violation
from audit.publisher import kwargs_repr
from audit.services.dead_letters import (
    FIRST_FAILED_HEADER,
    dead_letter_note,
    events_dead_letter,
)
from audit.services.ingest import Batch, events_ingest_many
from traceledger.queues import INGEST_QUEUE_NAME, INGEST_TASK_NAME
from traceledger.request_id import bound_request_id

logger = logging.getLogger(__name__)

# Transient only (STYLE: never Exception). psycopg.OperationalError (serialization failure,
# deadlock, lock and statement timeouts are subclasses) is named for when a raw psycopg call
# escapes Django's wrapper. Everything else is permanent: retrying a bad payload only delays
# the dead letter.
TRANSIENT_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    # Publishing a single event's dead letter failed: the retry re-stores nothing (its
    # neighbours are duplicates by then) and publishes the dead letter again.
    BrokerError,
)
# Backoff 1, 2, 4 ... capped at 60 s, "equal jitter" (each wait between half and all of
# that): the default 20 retries ride out at least ~7.5 min of database outage and wait at
# most ~15 min in total (the countdown lives in the broker's native-delayed-delivery queues,
# not in the worker, so RabbitMQ's consumer timeout does not apply). 8 retries (~1.5 min)
# sent the accepted batches of an ordinary failover of two minutes to the DLQ, for a person
# to replay; the 60 s cap keeps the first try after the database is back within a minute.
# Not Celery's own full jitter (a wait anywhere from 0 to the cap): its 8 waits could add up
# to seconds, so a 37 s outage dead-lettered a batch.
MAX_RETRIES = settings.TRACELEDGER_INGEST_MAX_RETRIES
# Every series at 0 from the start, so an alert on its rate has one before the first retry.
for _error in {e.__name__ for e in (*TRANSIENT_ERRORS, SoftTimeLimitExceeded)}:
    metrics.INGEST_RETRIES.labels(error=_error)


def retry_countdown(cap: float) -> int:
    """A wait between ``cap / 2`` and ``cap`` seconds: spread out, yet never much shorter.

    Whole seconds, at least 1: a countdown goes through RabbitMQ's native delayed delivery,
    which routes by ``int(countdown)`` and refuses 0 ("countdown must be a positive
    number"), and the task's retry would then reject the message outright."""
    return max(1, round(cap / 2 + random.uniform(0, cap / 2)))


class IngestTask(Task):
    def retry(self, *args, **kwargs):
        """Carry the time of the first failure in a header of the retry message.

        A retry is a new message and Celery drops ``x-death`` from it, so when retries run
        out RabbitMQ's ``x-death`` knows only the last failure. Celery copies the request's
        custom headers into each retry (``Context.as_execution_options``), so a header set
        at the first failure reaches the dead letter, where ``drain_dlq`` reads it as
        ``first_failed_at`` (tested with a real worker in test_dead_letters_failure_times).
        """
        headers = self.request.headers or {}
        if FIRST_FAILED_HEADER not in headers:
            self.request.headers = {**headers, FIRST_FAILED_HEADER: timezone.now().isoformat()}
        if kwargs.get("countdown"):  # autoretry's exponential step (its own jitter is off)
            kwargs["countdown"] = retry_countdown(kwargs["countdown"])
        # The retry is a new message: without this Celery writes the events themselves into
        # its kwargsrepr header, and the worker logs them at each retry.
        kwargs.setdefault("argsrepr", "()")
        kwargs.setdefault("kwargsrepr", kwargs_repr(self.request.kwargs or {}))
        return super().retry(*args, **kwargs)

    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        # Counted here: Celery's retry line is logged at most once per 30 s per task name
        # (traceledger/logging_tasks.py), so the log no longer says how many there were.
        metrics.INGEST_RETRIES.labels(error=type(exc).__name__).inc()

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
    name=INGEST_TASK_NAME,
    # Needed for retries, not only for routing: with quorum queues a retry's countdown goes
    # through Celery's native delayed delivery, which routes by the *queue's* routing key;
    # without a queue here the router picks task_default_queue ("maintenance") and the retry
    # silently leaves audit.ingest (and its DLX). See docs/ingest-worker.md.
    queue=INGEST_QUEUE_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    # A task that overran its soft limit waited on a database that stopped answering (a
    # dropped connection libpq has not noticed yet): retried like any outage, not rejected.
    autoretry_for=(*TRANSIENT_ERRORS, SoftTimeLimitExceeded),
    # Reject is an Exception too; never let autoretry swallow it (notes §1.3 trap).
    dont_autoretry_for=(Reject,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=False,  # IngestTask.retry applies equal jitter instead
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.TRACELEDGER_INGEST_SOFT_TIME_LIMIT,
    time_limit=settings.TRACELEDGER_INGEST_SOFT_TIME_LIMIT + 60,
)
def ingest_batch(self, *args, **kwargs) -> dict:
    """Store one API request's batch (kwargs ``tenant_id``, ``events``, ``request_id``), and
    under load the batches of other waiting messages in the same transaction."""
    started = time.perf_counter()
    violation = contract_violation(args, kwargs)
    if violation:
        _reject(self, "message does not follow the audit.ingest_batch contract", violation)
    own = Batch(
        tenant_id=kwargs["tenant_id"],
        events=kwargs["events"],
        submitted_by=kwargs.get("submitted_by", ""),
        request_id=kwargs.get("request_id"),
    )
    extras: list[Extra] = []

    def more() -> list[Batch]:
        extras.extend(coalescer().take(**coalesce_limits()))
        return [extra.batch for extra in extras]

    # Only a worker's delivery coalesces; an eager or direct call must not take messages.
    in_worker = bool(self.request.delivery_info) and not self.request.is_eager
    try:
        events_ingest_many([own], more=more if in_worker else None)
    except BaseException:
        if in_worker:
            coalescer().requeue(extras)
            coalescer().transaction_failed()
        raise
    if in_worker:
        coalescer().transaction_succeeded()
    _settle(extras, into=self.request.id)
    metrics.MESSAGES_PER_TRANSACTION.observe(1 + len(extras))
    if own.result.invalid:
        _reject(self, f"invalid batch: {own.result.invalid}", "")
    if own.result.rejected:
        events_dead_letter(
            tenant_id=own.tenant_id,
            rejected=own.result.rejected,
            request_id=kwargs.get("request_id"),
            task_id=self.request.id,
            submitted_by=own.submitted_by,
        )
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    return {
        **_outcome(own.result),
        "coalesced_messages": len(extras),
        "coalesced_stored": sum(len(extra.batch.result.stored_ids) for extra in extras),
    }


def _outcome(result) -> dict:
    return {
        "stored": len(result.stored_ids),
        "duplicates": result.duplicates,
        "dead_lettered": len(result.rejected),
    }


def _settle(extras: list[Extra], *, into: str) -> None:
    """After the commit: dead-letter each extra's refused events, then ack it; reject an
    extra whose batch is unusable. Acks go out together (``Coalescer.ack_all``, each by its
    own tag), flushed before any dead letter is published, so on a failure exactly the
    messages not yet settled go back to the queue (their rows are committed, so redelivery
    only drops duplicates and republishes the same letters)."""
    to_ack: list[Extra] = []

    def flush() -> None:
        coalescer().ack_all(to_ack)
        for acked in to_ack:  # logged once settled: the line says how the message ended
            with bound_request_id(acked.request_id):
                logger.info(
                    "ingest message %s coalesced into %s: %s",
                    acked.task_id,
                    into,
                    _outcome(acked.batch.result),
                )
        to_ack.clear()

    for index, extra in enumerate(extras):
        try:
            # The extra's own request id on its lines, not that of the task it joined.
            with bound_request_id(extra.request_id):
                if _settle_one(extra, flush):
                    to_ack.append(extra)
        except BaseException:
            flush()
            coalescer().requeue(extras[index:])
            raise
    flush()


def _settle_one(extra: Extra, flush: Callable[[], None]) -> bool:
    """Reject an unusable extra (False), or dead-letter its refused events and return True:
    it is to be acked."""
    result = extra.batch.result
    if result.invalid:
        reason = f"invalid batch: {result.invalid}"
        logger.error("ingest batch %s rejected: %s", extra.task_id, reason)
        dead_letter_note(task_id=extra.task_id, reason=reason)
        metrics.BATCHES_REJECTED.inc()
        coalescer().settle(extra, ack=False)
        return False
    if result.rejected:
        flush()  # acks before any dead letter is published (see _settle)
        events_dead_letter(
            tenant_id=extra.batch.tenant_id,
            rejected=result.rejected,
            request_id=extra.request_id,
            task_id=extra.task_id,
            submitted_by=extra.batch.submitted_by,
        )
    return True


def _reject(task, reason: str, details: str) -> None:
    logger.error("ingest batch %s rejected: %s %s", task.request.id, reason, details)
    dead_letter_note(task_id=task.request.id, reason=reason, exception=details)
    metrics.BATCHES_REJECTED.inc()
    raise Reject(reason, requeue=False)
