"""One dead-lettered AMQP message read into ``DeadLetter`` fields (``dead_letter_fields``).

Pure but for the worker's note, looked up in Redis: whatever the message holds (any body,
headers, encoding), the values fit the columns.
"""

import base64
import hashlib
import json
import math
from datetime import UTC, datetime

from audit.services.dead_letters.recording import dead_letter_note_read
from traceledger.queues import INGEST_DELIVERY_LIMIT, INGEST_QUEUE_NAME

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


# Why a message without a task header (another publisher's) was rejected, in the same words
# whether the worker's consumer (audit.worker_signals) or the coalescer took it.
NO_TASK_HEADER = "not a Celery task message (no task header)"


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


def _attempts(headers: dict, *, death_reason: str, queue: str) -> int:
    """How many times the worker tried: Celery's ``retries`` + 1, or, for a message the
    ingest queue dead-lettered at its delivery limit, that limit + 1 deliveries.

    Not ``x-delivery-count``: on the DLQ that header is the DLQ's own count (0 when first
    taken, measured on RabbitMQ 3.10), so each drain that left the message queued (Redis
    down, ``--limit``) raised the letter's attempts; the ingest queue's count is not kept."""
    attempts = max(_count(headers.get("retries")) + 1, 1)
    if death_reason == "delivery_limit" and queue == INGEST_QUEUE_NAME:
        attempts = max(attempts, INGEST_DELIVERY_LIMIT + 1)
    return attempts


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
        note = dead_letter_note_read(message_id)
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
        attempts = _attempts(headers, death_reason=death_reason, queue=original_queue)

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


def dead_letter_message_id(message) -> str:
    """The id the drain stores ``message`` under (and looks its worker's note up by)."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    return _message_id(headers, message.properties or {}, _raw_body(message))


def _label(message) -> str:
    """How the log and the command name a message that could not be stored."""
    try:
        return dead_letter_message_id(message)
    except Exception:  # naming it must not fail in turn
        return f"delivery tag {message.delivery_tag}"
