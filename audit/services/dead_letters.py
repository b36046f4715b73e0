"""Dead letters: from ``audit.ingest.dlq`` into the ``DeadLetter`` table, and back (replay).

Two kinds of message reach the DLQ (see ``docs/ingest-worker.md``):

* a whole Celery task message that RabbitMQ dead-lettered because the worker rejected it
  (poison batch, retries exhausted) or because it hit ``x-delivery-limit``; its reason comes
  from ``x-death`` plus a note the worker left in Redis keyed by task id;
* one event of a batch that the worker published there itself (invalid or refused by the
  database) while storing its neighbours; its reason travels in ``x-tl-*`` headers.

Both are stored with ``payload`` = the ingest task's kwargs, so a replay is a plain publish.
"""

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from kombu import Connection

from audit import metrics_worker as metrics
from audit.models import DeadLetter, DeadLetterStatus
from traceledger.queues import DLQ, DLX_EXCHANGE, INGEST_QUEUE_NAME, INGEST_TASK_NAME

logger = logging.getLogger(__name__)

NOTE_TTL = 14 * 24 * 3600  # longer than anyone leaves a DLQ undrained
DRAIN_BATCH = 200  # messages per transaction; acked only after it commits
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


class UnknownDeadLetters(Exception):
    def __init__(self, ids: list[int]):
        self.ids = ids
        super().__init__(f"no dead letter with id {', '.join(map(str, ids))}")


def _app():
    from traceledger.celery import app

    return app


def _broker_url() -> str:
    return _app().conf.broker_url


def _note_key(task_id: str) -> str:
    return f"audit:dlq-note:{task_id}"


def dead_letter_note(*, task_id: str | None, reason: str, exception: str = "") -> None:
    """Remember why the worker is about to reject ``task_id`` (best effort, Redis)."""
    if task_id:
        cache.set(_note_key(task_id), {"reason": reason, "exception": exception}, NOTE_TTL)


def events_dead_letter(
    *, tenant_id: int, rejected: list, request_id: str | None, task_id: str | None
) -> int:
    """Publish each rejected event as its own message to the DLX (confirmed, persistent).

    The message id is derived from the task id and the event, so a redelivered batch that
    dead-letters the same event again is drained into the same ``DeadLetter`` row.
    """
    app = _app()
    now = timezone.now().isoformat()
    with app.producer_or_acquire() as producer:
        for item in rejected:
            event_json = orjson.dumps(item.event, option=orjson.OPT_SORT_KEYS)
            digest = hashlib.sha256(event_json).hexdigest()[:32]
            producer.publish(
                {"tenant_id": tenant_id, "events": [item.event], "request_id": request_id},
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
                declare=[DLQ],
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
            metrics.EVENTS_DEAD_LETTERED.labels(
                reason="invalid" if item.reason.startswith("invalid") else "refused"
            ).inc()
    return len(rejected)


# --- draining ------------------------------------------------------------------------------


def _aware(value) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _decode(message) -> tuple[object, str]:
    try:
        return orjson.loads(message.body), ""
    except (orjson.JSONDecodeError, TypeError):
        raw = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        return {"undecodable_body": raw[:65536].decode("utf-8", "replace")}, "body is not JSON"


def dead_letter_fields(message) -> dict:
    """The ``DeadLetter`` columns of one DLQ message (pure: no I/O except the note look-up)."""
    headers = dict(message.headers or {})
    props = message.properties or {}
    body, decode_error = _decode(message)
    deaths = headers.get("x-death") or []
    death = deaths[0] if deaths else {}

    payload = body
    # Celery protocol 2 body: [args, kwargs, embed]; payload is the task's kwargs.
    if isinstance(body, list) and len(body) == 3 and isinstance(body[1], dict):
        payload = body[1] if not body[0] else {"args": body[0], "kwargs": body[1]}
    events = payload.get("events") if isinstance(payload, dict) else None
    tenant_id = payload.get("tenant_id") if isinstance(payload, dict) else None

    message_id = str(headers.get("id") or props.get("message_id") or "")
    if not message_id:
        message_id = "sha256:" + hashlib.sha256(message.body or b"").hexdigest()

    if "x-tl-reason" in headers:
        reason = str(headers["x-tl-reason"])
        exception = str(headers.get("x-tl-exception") or "")
        original_queue = str(headers.get("x-tl-original-queue") or INGEST_QUEUE_NAME)
        failed_at = _aware(headers.get("x-tl-failed-at"))
        first_failed_at = last_failed_at = failed_at
        attempts = 1
    else:
        note = cache.get(_note_key(message_id)) or {}
        death_reason = str(death.get("reason") or "unknown")
        original_queue = str(death.get("queue") or "")
        explain = {
            "rejected": "rejected by the worker",
            "delivery_limit": "delivery limit reached (worker lost or timed out repeatedly)",
            "expired": "message expired",
            "maxlen": "queue length limit",
        }.get(death_reason, death_reason)
        reason = note.get("reason") or decode_error or explain
        exception = note.get("exception") or f"x-death: {death_reason} from {original_queue}"
        times = [t for t in (_aware(d.get("time")) for d in deaths) if t]
        first_failed_at = min(times) if times else None
        last_failed_at = max(times) if times else None
        delivery_count = int(headers.get("x-delivery-count") or 0)
        attempts = max(int(headers.get("retries") or 0) + 1, delivery_count, 1)

    return {
        "message_id": message_id[:255],
        "tenant_id": tenant_id if isinstance(tenant_id, int) else None,
        "task_name": str(headers.get("task") or "")[:255],
        "payload": payload,
        "headers": orjson.loads(orjson.dumps(headers, default=str)),
        "event_count": len(events) if isinstance(events, list) else 0,
        "reason": reason[:255],
        "exception": exception,
        "attempts": attempts,
        "original_queue": original_queue[:255],
        "first_failed_at": first_failed_at,
        "last_failed_at": last_failed_at,
    }


def _store(messages: list) -> int:
    """Insert the batch (idempotent on message id), commit, then ack. Returns new rows."""
    created = 0
    with transaction.atomic():
        for message in messages:
            fields = dead_letter_fields(message)
            _, was_created = DeadLetter.objects.get_or_create(
                message_id=fields.pop("message_id"), defaults=fields
            )
            created += was_created
    # After commit: a crash before these acks redelivers the messages, and get_or_create
    # above turns the second drain into a no-op.
    for message in messages:
        message.ack()
    return created


def dead_letters_drain(
    *, limit: int | None = None, progress: Callable[[int], None] | None = None
) -> int:
    """Move up to ``limit`` messages (all when None) from the DLQ into ``DeadLetter`` rows.

    Returns the number of messages moved. ``progress(n)`` is called after each commit.
    """
    moved = 0
    with Connection(_broker_url(), connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=3)
        channel = conn.default_channel
        # basic_get with manual ack; a prefetch would hold messages we may not process.
        queue = DLQ.bind(channel)
        queue.declare()
        pending: list = []
        while limit is None or moved + len(pending) < limit:
            message = queue.get(no_ack=False, accept=None)
            if message is None:
                break
            pending.append(message)
            if len(pending) >= DRAIN_BATCH:
                _store(pending)
                moved += len(pending)
                pending = []
                if progress:
                    progress(moved)
        if pending:
            _store(pending)
            moved += len(pending)
            if progress:
                progress(moved)
    return moved


def dlq_depth() -> int | None:
    """Messages waiting in the DLQ (passive declare), or None when RabbitMQ cannot say."""
    try:
        # Admin pages call this: one quick attempt, no retries.
        with Connection(_broker_url(), connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=0)
            _, count, _ = conn.default_channel.queue_declare(queue=DLQ.name, passive=True)
            return count
    except Exception as exc:  # any broker or channel error means "unknown", never a 500
        logger.warning("cannot read the depth of %s: %s", DLQ.name, exc)
        return None


# --- replay and discard --------------------------------------------------------------------


def _selected(ids: list[int]) -> list[DeadLetter]:
    letters = list(DeadLetter.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
    missing = sorted(set(ids) - {letter.pk for letter in letters})
    if missing:
        raise UnknownDeadLetters(missing)
    return letters


def _publish_ingest(payload: dict) -> None:
    """Hand a dead letter's kwargs back to the pipeline, as a fresh message.

    A fresh message carries no ``x-death``, so RabbitMQ's dead-letter cycle detection cannot
    drop it (notes §1.7). The API side's ``events_submit`` confirms the publish or falls back
    to the outbox in the caller's transaction.
    """
    from audit.services.submission import events_submit

    events_submit(
        tenant_id=payload["tenant_id"],
        events=payload["events"],
        request_id=payload.get("request_id"),
    )


def _record(*, action: str, actor: str, letters: list[DeadLetter]) -> None:
    """Record the operator's action in the system tenant's trail (after our commit)."""
    from audit.services.submission import record_system_event

    ids = [letter.pk for letter in letters]
    verb = action.rsplit(".", 1)[-1]
    record_system_event(
        tenant_id=None,
        action=action,
        actor_id=actor[:256],
        actor_type="user",
        target_type="dead_letter",
        target_id=",".join(map(str, ids))[:256],
        description=f"{len(ids)} dead letter(s) {verb}ed by {actor}"[:2000],
        metadata={
            "dead_letter_ids": ids,
            "event_count": sum(letter.event_count for letter in letters),
        },
    )


def _replayable(payload) -> bool:
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("tenant_id"), int)
        and isinstance(payload.get("events"), list)
    )


def dead_letters_replay(*, ids: list[int], actor: str) -> int:
    """Republish dead letters to ``audit.ingest`` and mark them replayed; returns how many.

    Raises ``UnknownDeadLetters`` (and publishes nothing) when an id does not exist. Letters
    that are not ``new`` (already replayed or discarded) are skipped. Replaying twice is
    harmless anyway: the worker drops events whose (tenant, event_id) is stored.
    """
    with transaction.atomic():
        letters = [
            letter
            for letter in _selected(ids)
            if letter.status == DeadLetterStatus.NEW and _replayable(letter.payload)
        ]
        # Publish (confirmed) before the status commits: a failed commit only replays twice.
        for letter in letters:
            _publish_ingest(letter.payload)
        now = timezone.now()
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
            status=DeadLetterStatus.REPLAYED, status_changed_at=now, status_changed_by=actor
        )
    if letters:
        _record(action="dead_letter.replay", actor=actor, letters=letters)
    return len(letters)


def dead_letters_discard(*, ids: list[int], actor: str) -> int:
    """Mark dead letters discarded (kept for the record, never replayed); returns how many."""
    with transaction.atomic():
        letters = [letter for letter in _selected(ids) if letter.status == DeadLetterStatus.NEW]
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
            status=DeadLetterStatus.DISCARDED,
            status_changed_at=timezone.now(),
            status_changed_by=actor,
        )
    if letters:
        _record(action="dead_letter.discard", actor=actor, letters=letters)
    return len(letters)


def dead_letter_ids_new() -> list[int]:
    return list(
        DeadLetter.objects.filter(status=DeadLetterStatus.NEW)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
