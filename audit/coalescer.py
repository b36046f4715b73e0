"""Waiting ingest messages that join the running task's transaction (issue 9).

Celery acks each message when its own task returns, so batching several messages inside
Celery's task model would ack them before their rows commit (celery-batches acks a flush's
messages when it returns, failed or not). Instead an ingest task keeps Celery's semantics for
its own message (retries, reject to the DLQ, requeue when its process dies) and, once the
database has answered, takes up to ``TRACELEDGER_INGEST_COALESCE_MESSAGES`` more messages
from ``audit.ingest`` with ``basic.get`` on a connection of its own (manual ack). They join
the same transaction and are:

* acked after the commit (and after their invalid or refused events are dead-lettered);
* requeued when the transaction fails (the task's own message retries), after which the
  process takes no extras for a while (they come back as tasks of their own, whose failures
  retry through Celery instead of counting towards the delivery limit);
* rejected without requeue (RabbitMQ dead-letters them) when they break the contract;
* requeued by RabbitMQ when the process dies: the connection closes with them unacked.

Idle or lightly loaded, the queue is empty and a task stores its own message alone, so
coalescing adds no latency; under load transactions grow up to the limits.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass

import orjson
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from audit import metrics_worker as metrics
from audit.services.dead_letters import dead_letter_note
from audit.services.dead_letters.messages import NO_TASK_HEADER, dead_letter_message_id
from audit.services.ingest import Batch
from audit.topology import broker_connection
from traceledger.log_throttle import one_line
from traceledger.logging_beat import BROKER_CONNECTION_ERRORS
from traceledger.queues import INGEST_QUEUE, INGEST_TASK_NAME
from traceledger.request_id import bound_request_id

logger = logging.getLogger(__name__)
# Its broker-error lines, which every ingest task may repeat while RabbitMQ is away or
# flapping: throttled in LOGGING (README, "When a dependency fails").
broker_logger = logging.getLogger(f"{__name__}.broker")

CONTRACT_KWARGS = frozenset({"tenant_id", "events", "request_id", "submitted_by"})
SUBMITTED_BY_MAX = 300
# Bounds for a broker that hangs or is gone: a task never waits long for extras, and after a
# failure it does not try again for a while (its own message is processed regardless).
SOCKET_TIMEOUT = 2.0
BACKOFF_SECONDS = 5.0
# After a failed transaction a process takes no extras for a while, doubling up to this
# while failures go on: every requeue counts towards the queue's delivery limit (10), so a
# tenant whose chain head stays locked must not drag other messages into the DLQ with it.
PAUSE_MAX_SECONDS = 300.0


def contract_violation(args, kwargs) -> str | None:
    """Why a task message's arguments break the ``audit.ingest_batch`` contract, or None."""
    if not isinstance(kwargs, dict):
        return f"kwargs is a {type(kwargs).__name__}, not an object"
    unknown = set(kwargs) - CONTRACT_KWARGS
    if args or unknown or "tenant_id" not in kwargs or "events" not in kwargs:
        return f"positional args: {len(args or ())}; kwargs: {sorted(kwargs)}"
    submitted_by = kwargs.get("submitted_by", "")
    if not isinstance(submitted_by, str) or len(submitted_by) > SUBMITTED_BY_MAX:
        return f"submitted_by must be a string of at most {SUBMITTED_BY_MAX} characters"
    return None


@dataclass
class Extra:
    """A message taken from the queue and the batch it carries."""

    message: object
    task_id: str
    request_id: str | None
    batch: Batch


class Coalescer:
    """One per worker process (created after the fork); not thread-safe, like a pool child."""

    def __init__(self, broker_url: str):
        self.broker_url = broker_url
        self.pid = os.getpid()
        self._conn = None
        self._queue = None
        self._skip_until = 0.0
        self._pause = BACKOFF_SECONDS

    def take(self, *, max_messages: int, max_events: int) -> list[Extra]:
        """Up to ``max_messages`` waiting messages carrying about ``max_events`` events.

        Never raises: a broker that fails only means no extras this time.
        """
        if max_messages <= 0 or time.monotonic() < self._skip_until:
            return []
        taken: list[Extra] = []
        events = 0
        try:
            queue = self._bound_queue()
            while len(taken) < max_messages and events < max_events:
                message = queue.get(no_ack=False)
                if message is None:
                    break
                extra = self._extra(message)
                if extra is not None:
                    taken.append(extra)
                    events += len(extra.batch.events) if isinstance(extra.batch.events, list) else 1
        except SoftTimeLimitExceeded:  # not a broker failure: see _fail
            self._fail()
            raise
        except Exception as exc:
            _warn(exc, "no extra ingest messages this time")
            # Closing the connection hands back what was taken; none of it can be acked now.
            self._fail()
            return []
        return taken

    def settle(self, extra: Extra, *, ack: bool) -> None:
        """Ack (stored) or reject without requeue (dead-lettered by RabbitMQ)."""
        try:
            if ack:
                extra.message.ack()
            else:
                extra.message.reject(requeue=False)
        except SoftTimeLimitExceeded:  # not a broker failure: see _fail
            self._fail()
            raise
        except Exception as exc:
            # Unacked on a dead channel: RabbitMQ redelivers it and the worker drops the
            # duplicates, or rejects the same poison again.
            _warn(exc, "could not settle extra ingest message %s", extra.task_id)
            self._fail()

    def ack_all(self, extras: list[Extra]) -> None:
        """Ack every one of ``extras``, each by its own delivery tag.

        Not one ``basic.ack(multiple=True)``, which settles every unacked message on the
        channel up to the last: one taken but left unsettled (a soft time limit between a
        rollback and its requeue) would be acked with the next transaction's, its rows never
        committed (code review). The saving was not measurable (docs/performance.md)."""
        self._each(extras, lambda message: message.ack(), "could not ack %d extra ingest messages")

    def requeue(self, extras: list[Extra]) -> None:
        """Give messages back after a failed transaction (best effort: a closed channel
        requeues them anyway)."""
        self._each(
            extras, lambda message: message.requeue(), "could not requeue %d extra ingest messages"
        )

    def _each(self, extras: list[Extra], settle, failed: str) -> None:
        """``settle`` each extra's message in turn; on a broker failure, the rest go back to
        the queue with the connection (``failed`` counts them)."""
        for index, extra in enumerate(extras):
            try:
                settle(extra.message)
            except SoftTimeLimitExceeded:  # not a broker failure: see _fail
                self._fail()
                raise
            except Exception as exc:
                _warn(exc, failed, len(extras) - index)
                self._fail()
                return

    def transaction_failed(self) -> None:
        """Take no extras for a while (5 s, doubling up to 5 min while failures go on)."""
        self._skip_until = max(self._skip_until, time.monotonic() + self._pause)
        self._pause = min(self._pause * 2, PAUSE_MAX_SECONDS)

    def transaction_succeeded(self) -> None:
        self._pause = BACKOFF_SECONDS

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # closing a broken connection; nothing left to do
                logger.debug("closing the coalescer connection failed", exc_info=True)
        self._conn = self._queue = None

    def _bound_queue(self):
        if self._queue is None:
            conn = broker_connection(
                self.broker_url,
                name=f"traceledger-ingest-coalescer-{os.getpid()}",
                connect_timeout=SOCKET_TIMEOUT,
                io_timeout=SOCKET_TIMEOUT,
            )
            self._conn = conn
            conn.ensure_connection(max_retries=0, timeout=SOCKET_TIMEOUT)
            self._queue = INGEST_QUEUE(conn.channel())
        return self._queue

    def _fail(self) -> None:
        """Drop the connection (what its channel holds unsettled goes back to the queue) and
        take nothing for a while. Also on a soft time limit, which is re-raised rather than
        shrugged off as a broker failure: the task must stop and retry (code review)."""
        self.close()
        self._skip_until = max(self._skip_until, time.monotonic() + BACKOFF_SECONDS)

    def _extra(self, message) -> Extra | None:
        """The message as an ``Extra``; a message breaking the contract is rejected to the
        DLQ here (with a note for ``drain_dlq``) and None returned."""
        headers = message.headers or {}
        task_id = str(headers.get("id") or "")
        kwargs, reason, details, request_id = _decode(message, headers)
        if kwargs is None:
            # Under the request id the message carries (none when its body is unreadable),
            # never that of the task that took it: another request's.
            with bound_request_id(request_id):
                logger.error("extra ingest message %s rejected: %s %s", task_id, reason, details)
            # Under the id the drain stores the letter by (a digest of the body when the
            # message has no id): under task_id, "" for a message without a task header,
            # the drain never found the note and said only "rejected by the worker".
            dead_letter_note(
                task_id=dead_letter_message_id(message), reason=reason, exception=details
            )
            message.reject(requeue=False)
            metrics.BATCHES_REJECTED.inc()
            return None
        return Extra(
            message=message,
            task_id=task_id,
            request_id=request_id,
            batch=Batch(
                tenant_id=kwargs["tenant_id"],
                events=kwargs["events"],
                submitted_by=kwargs.get("submitted_by", ""),
                request_id=request_id,
            ),
        )


def _decode(message, headers: dict) -> tuple[dict | None, str, str, object]:
    """(kwargs, "", "", request id) for a message of the contract, else (None, reason,
    details, the request id it carries if its body can be read: its rejection is logged
    under it)."""
    try:
        args, kwargs, _embed = orjson.loads(message.body)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        args = kwargs = None
        readable = False
    else:
        readable = True
    request_id = kwargs.get("request_id") if isinstance(kwargs, dict) else None
    if not headers.get("task"):
        # The words of the worker's consumer for the same message (audit.worker_signals):
        # one foreign message, one reason, whichever of the two took it.
        return None, NO_TASK_HEADER, "", request_id
    if headers.get("task") != INGEST_TASK_NAME:
        reason = f"not an {INGEST_TASK_NAME} message"
        return None, reason, f"task header: {headers.get('task')!r}", request_id
    if message.content_type != "application/json":
        return None, "message is not JSON", f"content type: {message.content_type!r}", request_id
    if not readable:
        return None, "body is not a Celery protocol 2 JSON message", "", None
    violation = contract_violation(args, kwargs)
    if violation:
        reason = "message does not follow the audit.ingest_batch contract"
        return None, reason, violation, request_id
    return kwargs, "", "", request_id


def _warn(exc: Exception, message: str, *args) -> None:
    """``message`` (a constant template: one throttled kind per call site) for a failed broker
    call: one line with the error's class and message when the broker connection failed, the
    traceback when anything else did (a bug)."""
    if isinstance(exc, BROKER_CONNECTION_ERRORS):
        broker_logger.warning(
            f"{message}: broker error (%s)", *args, one_line(exc), extra={"error": repr(exc)}
        )
    else:
        logger.warning(message, *args, exc_info=exc)


# Per thread as well as per process: a channel is not to be shared, and its unacked messages
# must be one transaction's (a threads or gevent pool runs several tasks in one process).
_local = threading.local()


def coalescer() -> Coalescer:
    """This thread's coalescer (a forked pool child gets its own, never its parent's)."""
    current = getattr(_local, "coalescer", None)
    if current is None or current.pid != os.getpid():
        from traceledger.celery import app

        current = _local.coalescer = Coalescer(app.conf.broker_url)
    return current


def coalesce_limits() -> dict:
    return {
        "max_messages": settings.TRACELEDGER_INGEST_COALESCE_MESSAGES,
        "max_events": settings.TRACELEDGER_INGEST_COALESCE_EVENTS,
    }
