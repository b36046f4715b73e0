"""The DLQ into the ``DeadLetter`` table (``dead_letters_drain``), and its depth."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Least
from kombu import Connection

from audit.models import DeadLetter, DeadLetterStatus
from audit.services.dead_letters.messages import POSITIVE_INT_MAX, _label, dead_letter_fields
from audit.services.dead_letters.recording import (
    NoteUnavailable,
    _app,
    dead_letter_notes_reachable,
)
from audit.topology import queue_state
from traceledger.queues import DLQ

# The names the module had before it became a package: LOGGING (the depth line's throttle)
# and anyone's log queries use them.
logger = logging.getLogger("audit.services.dead_letters")
# The DLQ depth line only, throttled in LOGGING (at most one per 30 s per process): the
# admin reads the depth on every page view, so an outage repeated it per view. Not the
# module's logger: each message that could not be stored keeps its own line.
depth_logger = logging.getLogger("audit.services.dead_letters.depth")

DRAIN_BATCH = 200  # messages per transaction; acked only after it commits


def _broker_url() -> str:
    return _app().conf.broker_url


@dataclass(frozen=True)
class Repeat:
    """A drained message whose id already had a row: ``id`` is that row, ``status`` its
    status when the message arrived (the drain leaves it as it was)."""

    id: int
    status: str


REPEATS_NAMED = 10  # ids a report lists before "…"
# Repeats a result keeps by id (the admin records that many); the others are only counted.
REPEATS_KEPT = 100


def _ids(named: list[Repeat], total: int) -> str:
    listed = ", ".join(f"#{r.id}" for r in named[:REPEATS_NAMED])
    return listed + (", …" if total > REPEATS_NAMED else "")


@dataclass
class DrainResult:
    """What a drain moved: rows created, and messages folded into a row already there.

    An accumulator, added to batch by batch: the counts are exact, the repeats themselves are
    kept for the first ``REPEATS_KEPT`` only, so a drain of millions of repeats holds a
    bounded list and never copies it (a tuple rebuilt per batch was quadratic).
    """

    new: int = 0
    repeats: int = 0
    # Of the repeats, those of letters already replayed or discarded: the message failed
    # again after someone dealt with it, and nothing else would show it.
    handled: int = 0
    repeated: list[Repeat] = field(default_factory=list)  # the first REPEATS_KEPT repeats
    handled_before: list[Repeat] = field(default_factory=list)  # the first REPEATS_KEPT handled
    # Messages left in the DLQ because Redis, holding why the worker rejected them, did not
    # answer (``NoteUnavailable``); the drain stops taking more after the batch that met it.
    waiting_for_redis: int = 0

    @property
    def moved(self) -> int:
        """Messages taken off the queue and acked (new rows and repeats)."""
        return self.new + self.repeats

    def add_repeat(self, repeat: Repeat) -> None:
        self.repeats += 1
        if len(self.repeated) < REPEATS_KEPT:
            self.repeated.append(repeat)
        if repeat.status != DeadLetterStatus.NEW:
            self.handled += 1
            if len(self.handled_before) < REPEATS_KEPT:
                self.handled_before.append(repeat)

    def breakdown(self) -> str:
        """For people, after "moved N": "" when every message made a new row; else how many
        were repeats, of which rows, and which of those rows were handled already."""
        if not self.repeats:
            return ""
        text = (
            f"{self.new} new, {self.repeats} repeat(s) of letters already in the table "
            f"({_ids(self.repeated, self.repeats)}; their last failure time is updated)"
        )
        if self.handled:
            named = self.handled_before[:REPEATS_NAMED]
            listed = ", ".join(f"#{r.id} {r.status}" for r in named)
            more = ", …" if self.handled > REPEATS_NAMED else ""
            text += (
                f". {self.handled} of them had been handled already ({listed}{more}) and "
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
    messages: list, on_left: Callable[[str, Exception], None] | None, result: DrainResult
) -> list:
    """Insert the batch (idempotent on message id), commit, then ack what was stored.

    Adds what was stored (new rows, repeats folded into rows already there) to ``result``
    once committed, and returns the messages that could not be stored, unacked. Each of
    those is logged and passed to ``on_left``; its savepoint is rolled back, so it does not
    take the batch down with it.
    A failure of the database itself (connection lost, …) still fails the whole batch, with
    nothing acked: every message would fail the same way.
    """
    stored, left = [], []
    new, repeats = 0, []  # this batch's: at most DRAIN_BATCH
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
                if isinstance(exc, NoteUnavailable):  # an outage, not a bug: no traceback
                    result.waiting_for_redis += 1
                    logger.warning("dead letter %s left in %s: %s", label, DLQ.name, exc)
                else:
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
    result.new += new
    for repeat in repeats:
        result.add_repeat(repeat)
    return left


def dead_letters_drain(
    *,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_left: Callable[[str, Exception], None] | None = None,
) -> DrainResult:
    """Move up to ``limit`` messages (all when None) from the DLQ into ``DeadLetter`` rows.

    Returns what moved: new rows, and repeats (a message whose id already has a row, which
    keeps its status; see ``_fold_repeat``), counted, the first ``REPEATS_KEPT`` by id.
    ``progress(n)`` is called after each commit with the number moved so far. A message
    that cannot be stored (it should not happen: any body and header is stored, but
    a bug must not block the DLQ) stays in the queue for a later drain, is logged, and is
    passed to ``on_left(message_id, exception)``; the other messages move on. ``limit``
    counts the messages taken, moved or not. Raises ``NoteUnavailable`` (nothing taken)
    when Redis, which holds the worker's notes on why it rejected messages, does not answer.
    """
    dead_letter_notes_reachable()  # raises NoteUnavailable before any message is taken
    taken = 0
    result = DrainResult()
    left: list = []

    def store(batch: list) -> None:
        left.extend(_store(batch, on_left, result))
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
                if result.waiting_for_redis:
                    break  # the rest would wait for Redis too: leave them queued
        if pending:
            store(pending)
        # Held unacked until now, not requeued as they failed: basic.get would hand the
        # same message straight back and the drain would spin on it.
        for message in left:
            message.requeue()
        _settled_barrier(queue)
    if len(left) > result.waiting_for_redis:
        logger.error(
            "%d dead letter(s) could not be stored and were left in %s",
            len(left) - result.waiting_for_redis,
            DLQ.name,
        )
    if result.handled:
        logger.warning(
            "%d dead letter(s) already replayed or discarded failed again: %s",
            result.handled,
            _ids(result.handled_before, result.handled),
            # The first REPEATS_KEPT: a log record stays small.
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
