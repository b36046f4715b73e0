"""The outbox: ingest batches accepted while RabbitMQ was unavailable, relayed later.

A row is written in the request (the 202 waits for its commit) and deleted only after
RabbitMQ confirmed its republished message. A relay that dies between the confirm and the
delete republishes once more: the worker drops the duplicate events (same ids).
"""

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, transaction
from django.db.models import F

from audit import metrics
from audit.models import OutboxMessage
from audit.publisher import publish_tasks
from traceledger.log_throttle import one_line
from traceledger.queues import INGEST_TASK_NAME

logger = logging.getLogger(__name__)

RELAY_CHUNK = 50
# A relayed message may be large (1,000 events); give the confirm more time than a request.
RELAY_PUBLISH_TIMEOUT = 10.0


@dataclass(frozen=True)
class RelayResult:
    relayed: int
    failed: int
    remaining: int
    error: str = ""  # the first failure, one line (the broker's reason when ``failed``)


def outbox_message_create(*, payload: dict, error: str = "") -> OutboxMessage:
    message = OutboxMessage.objects.create(
        tenant_id=payload["tenant_id"],
        payload=payload,
        event_count=len(payload["events"]),
        last_error=error[:2000],
    )
    metrics.OUTBOX_WRITES.inc()
    return message


@dataclass(frozen=True)
class _PublishAfterCommit:
    """The on_commit callback of an outbox row written in a transaction; also how a later
    record of the same transaction finds that row (``connection.run_on_commit`` holds the
    callbacks of the transaction, minus those of savepoints rolled back)."""

    pk: int
    key: tuple

    def __call__(self) -> None:
        _relay_one(self.pk)


def outbox_message_in_transaction(*, payload: dict) -> None:
    """Make ``payload`` durable with the caller's transaction: an outbox row that commits or
    rolls back with it, published as soon as it commits (the relay's job when that fails).

    For a record that must exist exactly when the change it records does (an account
    change, a dead letter's replay or discard, a purge): published after the commit, it was
    lost to a process dying between the two; published before, it outlived a rollback.

    Records of one transaction for the same tenant (and request and submitter) share one
    row, in the order they were made, so they are one message and chain in that order: the
    system tenant's ``tenant.create`` and the ``user.create`` that made it were two messages,
    which two pool processes could chain the other way round.
    """
    from audit.validation import MAX_EVENTS_PER_REQUEST

    key = (payload["tenant_id"], payload.get("request_id"), payload.get("submitted_by", ""))
    connection = transaction.get_connection()
    for _, callback, _ in connection.run_on_commit:
        if isinstance(callback, _PublishAfterCommit) and callback.key == key:
            row = OutboxMessage.objects.filter(pk=callback.pk).first()
            if row is not None and row.event_count + len(payload["events"]) <= (
                MAX_EVENTS_PER_REQUEST
            ):
                row.payload["events"].extend(payload["events"])
                row.event_count = len(row.payload["events"])
                row.save(update_fields=["payload", "event_count"])
                return
    row = OutboxMessage.objects.create(
        tenant_id=payload["tenant_id"], payload=payload, event_count=len(payload["events"])
    )
    # robust: a failure is logged and the callbacks registered after this one still run;
    # the row stays for the relay.
    transaction.on_commit(_PublishAfterCommit(row.pk, key), robust=True)


def _relay_one(pk: int) -> None:
    """Publish one outbox row now and delete it once confirmed; a relay holding it already,
    an open breaker or a publish that fails leave it to ``audit.relay_outbox`` (every 10 s)."""
    from audit.publisher import BrokerSkipped, PublishError, publish_ingest_batch

    try:
        with transaction.atomic():
            row = OutboxMessage.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if row is None:
                return
            publish_ingest_batch(row.payload)
            row.delete()
    except (BrokerSkipped, PublishError) as exc:
        logger.info("outbox row %s left for the relay: %s", pk, one_line(exc))
        # On the row too, as the relay notes its own failures: the admin's outbox page
        # showed such a row with no attempt and no error.
        with contextlib.suppress(DatabaseError):  # the row is there; only its note is not
            _failure_note(pk, exc)
    except DatabaseError as exc:
        logger.info("outbox row %s left for the relay: %s", pk, one_line(exc))


def _failure_note(pk: int, error: BaseException) -> None:
    """Why a row is still there, for the admin's outbox page."""
    OutboxMessage.objects.filter(pk=pk).update(
        attempts=F("attempts") + 1, last_error=str(error)[:2000]
    )


def _publish(payloads: list[dict]) -> list:
    # The relay ignores the breaker: it runs off the request path and is the probe that
    # tells the broker is back. All confirms of a chunk are awaited together.
    return publish_tasks(
        task_name=INGEST_TASK_NAME,
        kwargs_list=payloads,
        timeout=RELAY_PUBLISH_TIMEOUT,
        force=True,
    )


def outbox_relay(
    *,
    chunk_size: int = RELAY_CHUNK,
    max_chunks: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RelayResult:
    """Republish outbox rows, oldest first, and delete each once RabbitMQ confirmed it.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` in chunks, so concurrent relays (beat
    plus a manual ``relay_outbox``) never publish the same row at the same time. Stops at
    the first failure: the broker is still down, later rows would fail too. ``progress``
    is called after each chunk with the rows it relayed (a command's progress bar).
    """
    relayed = failed = 0
    error = ""
    chunks = 0
    retried = False
    while max_chunks is None or chunks < max_chunks:
        chunks += 1
        with transaction.atomic():
            rows = list(
                OutboxMessage.objects.select_for_update(skip_locked=True).order_by("id")[
                    :chunk_size
                ]
            )
            if not rows:
                break
            outcomes = _publish([row.payload for row in rows])
            if any(outcomes) and not retried:
                # After a broker restart this process's connection is dead, and only the
                # failure tells (its first run reported the broker unavailable, 10 s after it
                # was back): once per run, the failed rows again on a fresh connection.
                retried = True
                again = [i for i, outcome in enumerate(outcomes) if outcome is not None]
                for i, outcome in zip(
                    again, _publish([rows[i].payload for i in again]), strict=True
                ):
                    outcomes[i] = outcome
            done = []
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome is None:
                    done.append(row.pk)
                    continue
                failed += 1
                error = error or one_line(outcome)
                _failure_note(row.pk, outcome)
            OutboxMessage.objects.filter(pk__in=done).delete()
        relayed += len(done)
        metrics.OUTBOX_RELAYED.inc(len(done))
        if progress is not None:
            progress(len(done))
        if failed:
            break
    remaining = OutboxMessage.objects.count()
    # Failures are the caller's to report (the task's throttled line, the command's exit):
    # while the broker is down they would repeat here on every run.
    if relayed:
        logger.info(
            "outbox relay", extra={"relayed": relayed, "failed": failed, "remaining": remaining}
        )
    return RelayResult(relayed=relayed, failed=failed, remaining=remaining, error=error)
