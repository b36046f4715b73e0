"""Dead letters: from ``audit.ingest.dlq`` into the ``DeadLetter`` table, and back (replay).

Two kinds of message reach the DLQ (see ``docs/ingest-worker.md``):

* a whole Celery task message that RabbitMQ dead-lettered because the worker rejected it
  (poison batch, retries exhausted) or because it hit ``x-delivery-limit``; its reason comes
  from ``x-death`` plus a note the worker left in Redis keyed by task id;
* one event of a batch that the worker published there itself (invalid or refused by the
  database) while storing its neighbours; its reason travels in ``x-tl-*`` headers.

Both are stored with ``payload`` = the ingest task's kwargs, so a replay is a plain publish.
"""

import base64
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import CharField, F, Func, Q, Value
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce, Least
from django.utils import timezone
from kombu import Connection

from accounts.models import Tenant
from accounts.signals import Actor
from audit import metrics_worker as metrics
from audit.models import DeadLetter, DeadLetterStatus
from audit.topology import queue_state
from traceledger.queues import DLQ, DLX_EXCHANGE, INGEST_QUEUE_NAME, INGEST_TASK_NAME

logger = logging.getLogger(__name__)
# The DLQ depth line only, throttled in LOGGING (at most one per 30 s per process): the
# admin reads the depth on every page view, so an outage repeated it per view. Not the
# module's logger: each message that could not be stored keeps its own line.
depth_logger = logging.getLogger(f"{__name__}.depth")

NOTE_TTL = 14 * 24 * 3600  # longer than anyone leaves a DLQ undrained
DRAIN_BATCH = 200  # messages per transaction; acked only after it commits
# Letters whose payloads a replay holds in memory at once: a letter may be a whole batch
# (up to 1,000 events, ~5 MiB of JSON, several times that as Python objects).
REPLAY_CHUNK = 10
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
                declare=[DLQ],
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
            metrics.EVENTS_DEAD_LETTERED.labels(reason=item.kind).inc()
    return len(rejected)


# --- draining ------------------------------------------------------------------------------

# The retry message of a failed ingest task carries the time of its first failure (set by
# ``audit.tasks.IngestTask.retry``): a retry is a new message without the old ``x-death``,
# so by the time retries run out RabbitMQ only knows the last failure.
FIRST_FAILED_HEADER = "x-tl-first-failed-at"
# Celery's native delayed delivery parks a retry in ``[prefix_]celery_delayed_<level>``
# queues; where RabbitMQ records their expiry in ``x-death`` (our quorum ones, with
# at-least-once dead-lettering, did not on 3.10), that is a wait, not a failure.
DELAYED_QUEUE_MARK = "celery_delayed_"
# Deeper JSON is kept as text: the JSON encoder under JSONField recurses per level.
JSONB_MAX_DEPTH = 200
POSITIVE_INT_MAX = 2**31 - 1  # PositiveIntegerField is a PostgreSQL integer


def _aware(value) -> datetime | None:
    try:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, tz=UTC)
        if isinstance(value, str):
            return _aware(datetime.fromisoformat(value))
    except (ValueError, OverflowError, OSError):  # a header anyone could have set
        pass
    return None


def _count(value) -> int:
    """A counter header (``retries``, ``x-delivery-count``) as a column can hold it; 0 when
    it is not a number."""
    try:
        return min(max(int(value), 0), POSITIVE_INT_MAX)
    except (TypeError, ValueError, OverflowError):
        return 0


def _text(value) -> str:
    """``value`` as text PostgreSQL can hold: NUL escaped as ``\\u0000`` (text and jsonb
    refuse it), lone surrogates as ``\\udXXX`` (py-amqp decodes header strings with
    ``surrogatepass``, and they cannot be encoded for the database)."""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _plain(value):
    """A header value as jsonb can hold it. Headers are kept for people to read, so an odd
    value (bytes, NUL, Decimal, NaN) is stored as readable text rather than refused."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {_text(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return _text(value)


def _jsonb_storable(value) -> bool:
    """Whether jsonb can hold decoded JSON as it is: no NUL or lone surrogate in any string
    or key, no infinite number (``1e400`` parses to inf), not absurdly deep."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > JSONB_MAX_DEPTH:
            return False
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return True


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _raw_body(message) -> bytes:
    """The body's bytes as RabbitMQ holds them.

    py-amqp hands over a ``str`` when it could decode the body with the message's
    ``content_encoding`` (``bytes`` otherwise); encoding it back gives the same bytes.
    """
    body = message.body
    if body is None:
        return b""
    if isinstance(body, str):
        try:
            return body.encode(message.content_encoding or "utf-8")
        except (LookupError, UnicodeError):
            return body.encode("utf-8", "surrogatepass")
    return bytes(body)


def _body(message, raw: bytes) -> tuple[object, object, str]:
    """``(decoded, payload, problem)``: the body's JSON (None when it is not JSON), what to
    store as ``payload``, and what is wrong with the body ("" when nothing is).

    A body jsonb cannot hold as JSON is kept faithfully as a description: its text (JSON
    text escapes a NUL, so a body with ``\\u0000`` in a string is still plain text), or, for
    bytes that are not UTF-8 or contain NUL, their base64; with the content type and
    encoding. JSON is parsed as kombu parses it (integers stay exact).
    """
    described = {
        "content_type": _text(message.content_type or ""),
        "content_encoding": _text(message.content_encoding or ""),
    }
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        encoded = base64.b64encode(raw).decode("ascii")
        return None, {"undecodable_body_base64": encoded, **described}, "body is not text"
    try:
        decoded = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None, {"undecodable_body": text, **described}, "body is not JSON"
    if not _jsonb_storable(decoded):
        problem = "body holds JSON that PostgreSQL cannot store (NUL, infinity): kept as text"
        return decoded, {"undecodable_body": text, **described}, problem
    return decoded, decoded, ""


def _message_id(headers: dict, props: dict, raw: bytes) -> str:
    """The Celery task id, else the AMQP message id, else a digest of the body (stable, so
    draining a redelivered copy still finds the same row)."""
    given = headers.get("id") or props.get("message_id")
    message_id = _text(given) if given else "sha256:" + hashlib.sha256(raw).hexdigest()
    if len(message_id) > 255:  # truncating alone could merge two different messages
        digest = hashlib.sha256(message_id.encode()).hexdigest()
        message_id = f"{message_id[:183]}:sha256:{digest}"  # 255 characters
    return message_id


def _failure_times(headers: dict, deaths: list[dict]) -> tuple[datetime | None, datetime | None]:
    """``(first, last)`` failure of a message RabbitMQ dead-lettered: ``x-death`` times of
    real failures, and the first failure the retries carried along (``FIRST_FAILED_HEADER``)."""
    times = [time for time in (_aware(death.get("time")) for death in deaths) if time is not None]
    last = max(times) if times else None
    carried = _aware(headers.get(FIRST_FAILED_HEADER))
    if carried is not None:
        times.append(carried)
    return (min(times) if times else None), last


def dead_letter_fields(message) -> dict:
    """The ``DeadLetter`` columns of one DLQ message (pure: no I/O except the note look-up).

    Whatever the message holds (any body, headers, encoding), the values fit the columns:
    PostgreSQL refuses NUL in text and jsonb, so such text is escaped or kept as base64.
    """
    headers = message.headers if isinstance(message.headers, dict) else {}
    props = message.properties or {}
    raw = _raw_body(message)
    decoded, payload, body_problem = _body(message, raw)
    x_death = headers.get("x-death")
    deaths = [
        death
        for death in (x_death if isinstance(x_death, list) else [])
        if isinstance(death, dict) and DELAYED_QUEUE_MARK not in _text(death.get("queue", ""))
    ]
    death = deaths[0] if deaths else {}  # RabbitMQ puts the latest first

    kwargs = decoded
    # Celery protocol 2 body: [args, kwargs, embed]; payload is the task's kwargs.
    if isinstance(decoded, list) and len(decoded) == 3 and isinstance(decoded[1], dict):
        kwargs = decoded[1] if not decoded[0] else {"args": decoded[0], "kwargs": decoded[1]}
        if payload is decoded:
            payload = kwargs
    events = kwargs.get("events") if isinstance(kwargs, dict) else None
    tenant_id = kwargs.get("tenant_id") if isinstance(kwargs, dict) else None

    message_id = _message_id(headers, props, raw)

    if "x-tl-reason" in headers:
        reason = _text(headers["x-tl-reason"])
        exception = _text(headers.get("x-tl-exception") or "")
        original_queue = _text(headers.get("x-tl-original-queue") or INGEST_QUEUE_NAME)
        failed_at = _aware(headers.get("x-tl-failed-at"))
        first_failed_at = last_failed_at = failed_at
        attempts = 1
    else:
        note = cache.get(_note_key(message_id)) or {}
        death_reason = _text(death.get("reason") or "unknown")
        original_queue = _text(death.get("queue") or "")
        explain = {
            "rejected": "rejected by the worker",
            "delivery_limit": "delivery limit reached (worker lost or timed out repeatedly)",
            "expired": "message expired",
            "maxlen": "queue length limit",
        }.get(death_reason, death_reason)
        reason = _text(note.get("reason") or body_problem or explain)
        exception = _text(note.get("exception") or f"x-death: {death_reason} from {original_queue}")
        first_failed_at, last_failed_at = _failure_times(headers, deaths)
        attempts = max(
            _count(headers.get("retries")) + 1, _count(headers.get("x-delivery-count")), 1
        )

    return {
        "message_id": message_id,
        "tenant_id": tenant_id if isinstance(tenant_id, int) and 0 < tenant_id < 2**63 else None,
        "task_name": _text(headers.get("task") or "")[:255],
        "payload": payload,
        "headers": _plain(headers),
        "event_count": min(len(events), POSITIVE_INT_MAX) if isinstance(events, list) else 0,
        "reason": reason[:255],
        "exception": exception,
        "attempts": attempts,
        "original_queue": original_queue[:255],
        "first_failed_at": first_failed_at,
        "last_failed_at": last_failed_at,
    }


def _label(message) -> str:
    """How the log and the command name a message that could not be stored."""
    try:
        headers = message.headers if isinstance(message.headers, dict) else {}
        return _message_id(headers, message.properties or {}, _raw_body(message))
    except Exception:  # naming it must not fail in turn
        return f"delivery tag {message.delivery_tag}"


@dataclass(frozen=True)
class Repeat:
    """A drained message whose id already had a row: ``id`` is that row, ``status`` its
    status when the message arrived (the drain leaves it as it was)."""

    id: int
    status: str


REPEATS_NAMED = 10  # ids a report lists before "…"


def _ids(repeats) -> str:
    named = ", ".join(f"#{r.id}" for r in repeats[:REPEATS_NAMED])
    return named + (", …" if len(repeats) > REPEATS_NAMED else "")


@dataclass(frozen=True)
class DrainResult:
    """What a drain moved: rows created, and messages folded into a row already there."""

    new: int = 0
    repeats: tuple[Repeat, ...] = ()

    @property
    def moved(self) -> int:
        """Messages taken off the queue and acked (new rows and repeats)."""
        return self.new + len(self.repeats)

    @property
    def handled_before(self) -> tuple[Repeat, ...]:
        """Repeats of letters already replayed or discarded: the message failed again after
        someone dealt with it, and nothing else would show it."""
        return tuple(r for r in self.repeats if r.status != DeadLetterStatus.NEW)

    def breakdown(self) -> str:
        """For people, after "moved N": "" when every message made a new row; else how many
        were repeats, of which rows, and which of those rows were handled already."""
        if not self.repeats:
            return ""
        text = (
            f"{self.new} new, {len(self.repeats)} repeat(s) of letters already in the table "
            f"({_ids(self.repeats)}; their last failure time is updated)"
        )
        handled = self.handled_before
        if handled:
            listed = ", ".join(f"#{r.id} {r.status}" for r in handled[:REPEATS_NAMED])
            more = ", …" if len(handled) > REPEATS_NAMED else ""
            text += (
                f". {len(handled)} of them had been handled already ({listed}{more}) and "
                "failed again since; they keep that status: look at them"
            )
        return text


def _fold_repeat(row: DeadLetter, fields: dict) -> None:
    """A message whose id already has a row: the same bytes failed again (a producer
    without message ids re-sent them), or the same message came back (a drain that died
    between its commit and its acks). Only a later failure moves the row's last failure
    time and adds its attempts, so a copy drained twice changes nothing. The status, and
    who set it, stay: a discard or a replay was audited and is not undone by a drain; the
    drain's report names such rows instead."""
    failed = fields["last_failed_at"]
    if failed is None:
        return
    DeadLetter.objects.filter(
        Q(last_failed_at__isnull=True) | Q(last_failed_at__lt=failed), pk=row.pk
    ).update(
        last_failed_at=failed,
        first_failed_at=Coalesce(F("first_failed_at"), Value(fields["first_failed_at"] or failed)),
        attempts=Least(F("attempts") + fields["attempts"], POSITIVE_INT_MAX),
    )


def _store(
    messages: list, on_left: Callable[[str, Exception], None] | None
) -> tuple[DrainResult, list]:
    """Insert the batch (idempotent on message id), commit, then ack what was stored.

    Returns what was stored (new rows, repeats folded into rows already there) and the
    messages that could not be stored, unacked. Each of those is logged and passed to
    ``on_left``; its savepoint is rolled back, so it does not take the batch down with it.
    A failure of the database itself (connection lost, …) still fails the whole batch, with
    nothing acked: every message would fail the same way.
    """
    stored, left = [], []
    new, repeats = 0, []
    with transaction.atomic():
        for message in messages:
            try:
                with transaction.atomic():  # savepoint: one refused row, not the batch
                    fields = dead_letter_fields(message)
                    row, created = DeadLetter.objects.get_or_create(
                        message_id=fields.pop("message_id"), defaults=fields
                    )
                    if not created:
                        _fold_repeat(row, fields)
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                label = _label(message)
                logger.exception("cannot store dead letter %s; left in %s", label, DLQ.name)
                if on_left:
                    on_left(label, exc)
                left.append(message)
            else:
                stored.append(message)
                if created:
                    new += 1
                else:
                    repeats.append(Repeat(id=row.pk, status=row.status))
    # After commit: a crash before these acks redelivers the messages, and get_or_create
    # above turns the second drain into a repeat that changes nothing.
    for message in stored:
        message.ack()
    return DrainResult(new=new, repeats=tuple(repeats)), left


def dead_letters_drain(
    *,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_left: Callable[[str, Exception], None] | None = None,
) -> DrainResult:
    """Move up to ``limit`` messages (all when None) from the DLQ into ``DeadLetter`` rows.

    Returns what moved: new rows, and repeats (a message whose id already has a row, which
    keeps its status; see ``_fold_repeat``). ``progress(n)`` is called after each commit
    with the number moved so far. A
    message that cannot be stored (it should not happen: any body and header is stored, but
    a bug must not block the DLQ) stays in the queue for a later drain, is logged, and is
    passed to ``on_left(message_id, exception)``; the other messages move on. ``limit``
    counts the messages taken, moved or not.
    """
    taken = 0
    result = DrainResult()
    left: list = []

    def store(batch: list) -> None:
        nonlocal result
        batch_result, batch_left = _store(batch, on_left)
        left.extend(batch_left)
        result = DrainResult(
            new=result.new + batch_result.new, repeats=result.repeats + batch_result.repeats
        )
        if progress:
            progress(result.moved)

    with Connection(_broker_url(), connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=3)
        channel = conn.default_channel
        # basic_get with manual ack; a prefetch would hold messages we may not process.
        queue = DLQ.bind(channel)
        queue.declare()
        pending: list = []
        while limit is None or taken < limit:
            message = queue.get(no_ack=False, accept=None)
            if message is None:
                break
            taken += 1
            pending.append(message)
            if len(pending) >= DRAIN_BATCH:
                store(pending)
                pending = []
        if pending:
            store(pending)
        # Held unacked until now, not requeued as they failed: basic.get would hand the
        # same message straight back and the drain would spin on it.
        for message in left:
            message.requeue()
        _settled_barrier(queue)
    if left:
        logger.error(
            "%d dead letter(s) could not be stored and were left in %s", len(left), DLQ.name
        )
    if result.handled_before:
        logger.warning(
            "dead letters already replayed or discarded failed again: %s",
            _ids(result.handled_before),
            extra={"dead_letter_ids": [r.id for r in result.handled_before]},
        )
    return result


def _settled_barrier(queue) -> None:
    """Return only once the acks sent on this channel have taken effect.

    A quorum queue settles acks asynchronously, and a channel closed right after them drops
    the settlements not yet applied: the messages come back, so the DLQ never empties and
    every drain "moves" them again (RabbitMQ 3.10, 380 messages acked one by one then
    closed: 88-153 came back; with ``multiple=True`` or a channel close 347). A basic.get is
    a command in the queue's own log, after those settlements, so its answer means they
    were applied (0 came back in every run). A message it takes goes straight back.
    """
    message = queue.get(no_ack=False, accept=None)
    if message is not None:
        message.requeue()


def dlq_depth() -> int | None:
    """Messages waiting in the DLQ, or None when RabbitMQ cannot say. Declares the DLQ and
    its binding first: a DLQ deleted under the running stack read as "RabbitMQ is
    unreachable" (a passive declare's 404), and ``drain_dlq`` refused to run."""
    try:
        # Admin pages call this: one quick attempt, no retries.
        return queue_state(_broker_url(), DLQ, timeout=1, declare=True).messages
    except Exception as exc:  # any broker or channel error means "unknown", never a 500
        depth_logger.warning("cannot read the depth of %s: %s", DLQ.name, exc)
        return None


# --- replay and discard --------------------------------------------------------------------


def _locked(ids: list[int], tenant_id: int | None) -> list[tuple[int, str, int]]:
    """``(id, status, event_count)`` of each letter, locked FOR UPDATE until the caller's
    transaction ends (a second operator's replay of the same letters waits, then finds them
    no longer new). Not the payload: a letter holds up to a whole batch (~5 MiB) and a
    selection may hold thousands."""
    letters = DeadLetter.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    if tenant_id is not None:
        # Another tenant's letter reads as unknown: its id is not confirmed to exist.
        letters = letters.filter(tenant_id=tenant_id)
    rows = list(letters.values_list("pk", "status", "event_count"))
    missing = sorted(set(ids) - {pk for pk, _, _ in rows})
    if missing:
        raise UnknownDeadLetters(missing)
    return rows


def _publish_ingest(payload: dict) -> str:
    """Hand a dead letter's kwargs back to the pipeline, as a fresh message.

    A fresh message carries no ``x-death``, so RabbitMQ's dead-letter cycle detection cannot
    drop it (notes §1.7). The API side's ``events_submit`` confirms the publish or falls back
    to the outbox in the caller's transaction; returns which (``"broker"`` or ``"outbox"``).
    """
    from audit.services.submission import events_submit

    submitted_by = payload.get("submitted_by")
    return events_submit(
        tenant_id=payload["tenant_id"],
        events=payload["events"],
        request_id=payload.get("request_id"),
        # Who handed the events in, kept through the dead letter (docs/ingest.md): without
        # it the replayed events were stored as nobody's.
        submitted_by=submitted_by if isinstance(submitted_by, str) else "",
    )


def _record(
    *, action: str, actor: Actor, ids: list[int], event_count: int, tenant_id: int | None
) -> None:
    """Record the operator's action in the system tenant's trail (after our commit) and,
    when the actor is a tenant's staff (``tenant_id``), in that tenant's trail too: its
    compliance staff cannot read the system tenant's trail, yet the letters were theirs."""
    from audit.services.submission import record_system_event

    verb = action.rsplit(".", 1)[-1]
    event = {
        "action": action,
        # The same identity as the person's other actions (id, type, name: accounts'
        # actor_for_user), so filtering the trail by actor finds all of them.
        "actor_id": actor.id[:256],
        "actor_type": actor.type,
        "actor_name": actor.name[:256],
        "target_type": "dead_letter",
        "target_id": ",".join(map(str, ids))[:256],
        "description": f"{len(ids)} dead letter(s) {verb}ed by {actor.name or actor.id}"[:2000],
        "metadata": {
            "dead_letter_ids": ids,
            "event_count": event_count,
        },
    }
    record_system_event(tenant_id=None, **event)
    if tenant_id is not None:
        record_system_event(tenant_id=tenant_id, **event)


def _replayable(payload) -> bool:
    """An ingest batch the publisher can send again: a tenant id (an int, not a bool, within
    PostgreSQL's bigint), a list of events, and nothing orjson cannot write. A drained
    message is stored as it arrived, and an integer beyond 64 bits anywhere in it made the
    publish raise: the whole replay was a 500, after the letters before it had been sent."""
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return False
    tenant_id = payload.get("tenant_id")
    if type(tenant_id) is not int or not 0 < tenant_id < 2**63:
        return False
    try:
        orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return False
    return True


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    not_new: int  # already replayed or discarded
    not_replayable: int  # no ingest batch to republish (not JSON, not a task, no tenant)
    # Of ``replayed``: batches RabbitMQ did not confirm, kept in the outbox for the relay.
    via_outbox: int = 0
    # Batches of a tenant that does not exist: the worker would only dead-letter them again.
    unknown_tenant: int = 0

    def summary(self, selected: int) -> str:
        """The outcome for people: how many of ``selected`` were replayed, where to ("to
        audit.ingest" only when RabbitMQ confirmed every batch), and what was skipped."""
        head = f"Replayed {self.replayed} of {selected} selected dead letter(s)"
        relay = "the outbox relay publishes {} to audit.ingest once RabbitMQ is back"
        if not self.via_outbox:
            text = f"{head} to audit.ingest."
        elif self.via_outbox == self.replayed:
            text = (
                f"{head} into the outbox: RabbitMQ did not confirm them, so they were "
                f"accepted there and {relay.format('them')}."
            )
        else:
            text = (
                f"{head}: {self.replayed - self.via_outbox} to audit.ingest, "
                f"{self.via_outbox} into the outbox (RabbitMQ did not confirm them; "
                f"{relay.format('those')})."
            )
        skipped = self.skipped_text()
        return text + (f" Skipped: {skipped}." if skipped else "")

    def skipped_text(self) -> str:
        """Why letters were skipped, for people ("" when none were)."""
        parts = []
        if self.not_new:
            parts.append(f"{self.not_new} no longer new (replayed or discarded already)")
        if self.not_replayable:
            parts.append(
                f"{self.not_replayable} not replayable: the payload is not an ingest batch "
                "(not JSON, not an audit.ingest_batch task, or no tenant and events), so "
                "replaying cannot store anything; discard them once read"
            )
        if self.unknown_tenant:
            parts.append(
                f"{self.unknown_tenant} of a tenant that does not exist (the worker would "
                "dead-letter them again); discard them once read"
            )
        return "; ".join(parts)


class _JsonbTypeof(Func):
    function = "jsonb_typeof"
    output_field = CharField()


def dead_letters_replay_preview(queryset) -> ReplayResult:
    """What ``dead_letters_replay`` would skip of ``queryset``, counted in the database (a
    "select all" may hold thousands of letters, each payload up to megabytes): the
    ``_replayable`` rule as SQL (a JSON number where it wants an int: a float ``tenant_id``
    is counted replayable here and skipped by the replay, which says so)."""
    fresh = queryset.filter(status=DeadLetterStatus.NEW)
    replayable = fresh.annotate(
        tenant_type=_JsonbTypeof(KeyTransform("tenant_id", "payload")),
        events_type=_JsonbTypeof(KeyTransform("events", "payload")),
    ).filter(tenant_type="number", events_type="array")
    fresh_count = fresh.count()
    return ReplayResult(
        replayed=0,
        not_new=queryset.count() - fresh_count,
        not_replayable=fresh_count - replayable.count(),
    )


def dead_letters_replay(
    *, ids: list[int], actor: Actor, tenant_id: int | None = None
) -> ReplayResult:
    """Republish dead letters to ``audit.ingest`` and mark them replayed.

    Raises ``UnknownDeadLetters`` (and publishes nothing) when an id does not exist, or, with
    ``tenant_id`` (the actor is that tenant's staff), is not that tenant's; the replay is then
    recorded in that tenant's trail as well as the system tenant's. Letters that are not
    ``new`` (already replayed or discarded), or whose payload is no ingest batch, are skipped
    and counted. Replaying twice is harmless anyway: the worker drops events whose
    (tenant, event_id) is stored.

    One transaction, as before: every selected row is locked first (ids, status and event
    count only), then the payloads are read ``REPLAY_CHUNK`` letters at a time, so memory
    holds one chunk of payloads, not the whole selection.
    """
    with transaction.atomic():
        selected = _locked(ids, tenant_id)
        fresh = {pk: count for pk, status, count in selected if status == DeadLetterStatus.NEW}
        fresh_ids = list(fresh)  # in id order, as _locked returns them
        replayed: list[int] = []
        via_outbox = unknown_tenant = 0
        # Publish (confirmed) before the status commits: a failed commit only replays twice.
        for start in range(0, len(fresh_ids), REPLAY_CHUNK):
            chunk = fresh_ids[start : start + REPLAY_CHUNK]
            rows = DeadLetter.objects.filter(pk__in=chunk).order_by("pk")
            batches = [(pk, p) for pk, p in rows.values_list("pk", "payload") if _replayable(p)]
            tenants = set(
                Tenant.objects.filter(pk__in={p["tenant_id"] for _, p in batches}).values_list(
                    "pk", flat=True
                )
            )
            for pk, payload in batches:
                # Replaying a batch whose tenant is unknown (the most common poison) only
                # made a new dead letter with nothing pointing back to this one.
                if payload["tenant_id"] not in tenants:
                    unknown_tenant += 1
                    continue
                via_outbox += _publish_ingest(payload) == "outbox"
                replayed.append(pk)
        now = timezone.now()
        DeadLetter.objects.filter(pk__in=replayed).update(
            status=DeadLetterStatus.REPLAYED,
            status_changed_at=now,
            status_changed_by=actor.name or actor.id,
        )
    if replayed:
        _record(
            action="dead_letter.replay",
            actor=actor,
            ids=replayed,
            event_count=sum(fresh[pk] for pk in replayed),
            tenant_id=tenant_id,
        )
    return ReplayResult(
        replayed=len(replayed),
        not_new=len(selected) - len(fresh),
        not_replayable=len(fresh) - len(replayed) - unknown_tenant,
        via_outbox=via_outbox,
        unknown_tenant=unknown_tenant,
    )


def dead_letters_discard(*, ids: list[int], actor: Actor, tenant_id: int | None = None) -> int:
    """Mark dead letters discarded (kept for the record, never replayed); returns how many.

    ``tenant_id`` as for ``dead_letters_replay``: only that tenant's letters, and the discard
    recorded in its trail too. Only ids, status and event count are read: a discard never
    needs a payload.
    """
    with transaction.atomic():
        fresh = {
            pk: count
            for pk, status, count in _locked(ids, tenant_id)
            if status == DeadLetterStatus.NEW
        }
        DeadLetter.objects.filter(pk__in=list(fresh), status=DeadLetterStatus.NEW).update(
            status=DeadLetterStatus.DISCARDED,
            status_changed_at=timezone.now(),
            status_changed_by=actor.name or actor.id,
        )
    if fresh:
        _record(
            action="dead_letter.discard",
            actor=actor,
            ids=list(fresh),
            event_count=sum(fresh.values()),
            tenant_id=tenant_id,
        )
    return len(fresh)


def dead_letter_ids_new() -> list[int]:
    return list(
        DeadLetter.objects.filter(status=DeadLetterStatus.NEW)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
