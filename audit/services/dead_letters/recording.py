"""What the worker leaves for the DLQ: a note on why it rejects a task (Redis), and each
rejected event of a batch as its own message (published to the DLX)."""

import hashlib

import orjson
from django.core.cache import cache
from django.utils import timezone
from django_redis.exceptions import ConnectionInterrupted

from audit import metrics_worker as metrics
from traceledger.queues import DLQ, DLX_EXCHANGE, INGEST_QUEUE_NAME, INGEST_TASK_NAME

NOTE_TTL = 14 * 24 * 3600  # longer than anyone leaves a DLQ undrained
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def _app():
    from traceledger.celery import app

    return app


def _note_key(task_id: str) -> str:
    return f"audit:dlq-note:{task_id}"


def dead_letter_note(*, task_id: str | None, reason: str, exception: str = "") -> None:
    """Remember why the worker is about to reject ``task_id`` (best effort, Redis)."""
    if task_id:
        cache.set(_note_key(task_id), {"reason": reason, "exception": exception}, NOTE_TTL)


class NoteUnavailable(Exception):
    """Redis, where the worker left why it rejected a message, does not answer. The drain
    leaves such a message in the DLQ for a pull once Redis is back: stored now, it would keep
    "rejected by the worker" for good, and its real reason would expire in Redis."""


def dead_letter_notes_reachable() -> None:
    """``NoteUnavailable`` when Redis does not answer now. Asked before a drain takes any
    message: each message it then left in the quorum DLQ would be returned to it, which
    raises its delivery count (RabbitMQ 4 drops a message past the default limit of 20)."""
    try:
        cache.client.get_client(write=False).ping()
    except Exception as exc:  # redis's ConnectionError, TimeoutError, the latch's skip
        raise NoteUnavailable(
            "Redis does not answer, and it holds why the worker rejected some letters: "
            "nothing was taken from the queue; drain again once Redis is back"
        ) from exc


def dead_letter_note_read(task_id: str) -> dict:
    """The worker's note on ``task_id`` ({} when it left none); ``NoteUnavailable`` when
    Redis cannot be asked. Not ``cache.get``: django-redis (the project's cache) answers an
    outage as a miss; its client raises."""
    try:
        return cache.client.get(_note_key(task_id)) or {}
    except ConnectionInterrupted as exc:
        raise NoteUnavailable(
            "Redis does not answer, and it holds why the worker rejected this message: left "
            "in the queue for a pull once Redis is back"
        ) from exc


def events_dead_letter(
    *,
    tenant_id: int,
    rejected: list,
    request_id: str | None,
    task_id: str | None,
    submitted_by: str = "",
) -> int:
    """Publish each rejected event as its own message to the DLX (confirmed, persistent).

    The message id is derived from the task id and the event, so a redelivered batch that
    dead-letters the same event again is drained into the same ``DeadLetter`` row.
    """
    app = _app()
    now = timezone.now().isoformat()
    with app.producer_or_acquire() as producer:
        # Declared anew for every batch of letters, not from kombu's cache of what this
        # connection declared once: a DLQ deleted since (by an operator, a broker reset)
        # left the letters unroutable, confirmed by RabbitMQ and dropped, the batch acked
        # (code review). One round trip, on a path taken only by refused events.
        DLQ(producer.channel).declare()
        for item in rejected:
            event_json = orjson.dumps(item.event, option=orjson.OPT_SORT_KEYS)
            digest = hashlib.sha256(event_json).hexdigest()[:32]
            kwargs = {"tenant_id": tenant_id, "events": [item.event], "request_id": request_id}
            if submitted_by:  # a replay stores it as the original submission would have
                kwargs["submitted_by"] = submitted_by
            producer.publish(
                kwargs,
                exchange=DLX_EXCHANGE,
                routing_key=DLQ.routing_key,
                serializer="json",
                delivery_mode=2,
                message_id=f"{task_id or 'no-task'}:{digest}",
                headers={
                    "task": INGEST_TASK_NAME,
                    "x-tl-reason": item.reason[:255],
                    "x-tl-exception": item.exception[:4000],
                    "x-tl-task-id": task_id or "",
                    "x-tl-original-queue": INGEST_QUEUE_NAME,
                    "x-tl-failed-at": now,
                },
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
            metrics.EVENTS_DEAD_LETTERED.labels(reason=item.kind).inc()
    return len(rejected)
