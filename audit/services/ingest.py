"""The worker's write path: queued batches become chained, stored, deduplicated rows.

One transaction can hold the batches of several messages (``events_ingest_many``, issue 9):
the transaction, the chain-head lock and the COPY are paid once for all of them. Contract of
a batch (ARCHITECTURE §5, published by the API side): a list of flat event dicts, each
carrying every column of ``AuditEvent`` except ``tenant``/``stored_at`` and the ledger fields.
See ``docs/ingest-worker.md``.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Tenant
from audit import metrics_worker as metrics
from audit.ledger.canonical import CanonicalError
from audit.ledger.chain import chain_head_lock, chain_prepare, chain_rows
from audit.models import AuditEvent
from audit.services.event_rows import (
    CONTENT_COLUMNS,
    content_differences,
    event_row,
    rows_copy,
)
from audit.signals import events_ingested

logger = logging.getLogger(__name__)

# Errors that mean "this row can never be stored as it is" (as opposed to OperationalError:
# the database is unavailable, locked or cancelled us, and a retry may succeed).
# CanonicalError: a value the ledger cannot hash exactly (e.g. an integer beyond 2**53).
PERMANENT_DB_ERRORS = (IntegrityError, DataError, CanonicalError)
# The dead letter's reason for a conflicting copy; the details name the columns that differ.
CONFLICT_REASON = "conflicting duplicate: event_id already stored with other content"
BEHIND_REFUSED = (
    "database refused the event: an earlier copy of its event_id in the same transaction "
    "was refused, this one was not tried; replay it on its own"
)


class InvalidBatch(Exception):
    """The message as a whole cannot be processed (bad tenant, not a list...): dead-letter it."""


@dataclass
class RejectedEvent:
    event: object
    reason: str
    exception: str = ""
    # The label of traceledger_events_dead_lettered_total: invalid, refused or conflict.
    kind: str = "refused"


@dataclass
class IngestResult:
    stored_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[RejectedEvent] = field(default_factory=list)
    # Set when the batch as a whole is unusable (the message is dead-lettered whole).
    invalid: str | None = None


@dataclass
class Batch:
    """One message's events. ``result`` is filled in by ``events_ingest_many``."""

    tenant_id: object
    events: object
    result: IngestResult = field(default_factory=IngestResult)
    submitted_by: str = ""  # the message's ``submitted_by`` (``AuditEvent.submitted_by``)
    # The message's ``request_id`` (the API request that sent it), passed on to indexing so
    # that the index task logs under it.
    request_id: str | None = None
    # Valid rows, first occurrence of each event_id within the batch, and the events as
    # received (by id) for dead letters.
    rows: list[dict] = field(default_factory=list, repr=False)
    originals: dict[str, object] = field(default_factory=dict, repr=False)
    # Later copies of an event_id within the batch (row, event as received): the API refuses
    # them, a hand-edited letter may hold them. Judged with the transaction's other copies.
    repeats: list[tuple[dict, object]] = field(default_factory=list, repr=False)
    # Per row id, its canonical form without the sequence (``chain_prepare``), made before
    # the chain-head lock; and the time that took, which is ledger time too.
    templates: dict[str, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    ledger_seconds: float = 0.0

    def prepare(self) -> None:
        """Validate the batch and its events (CPU only); bad events are set aside alone."""
        tenant_id, events = self.tenant_id, self.events
        if not isinstance(tenant_id, int) or isinstance(tenant_id, bool):
            self.result.invalid = f"tenant_id must be an integer, not {type(tenant_id).__name__}"
            return
        if not isinstance(events, list):
            self.result.invalid = f"events must be a list, not {type(events).__name__}"
            return
        seen: set[str] = set()
        for event in events:
            try:
                row, metadata_is_jcs = event_row(
                    tenant_id=tenant_id, event=event, submitted_by=self.submitted_by
                )
            except ValueError as exc:
                self.result.rejected.append(
                    RejectedEvent(event=event, reason=f"invalid event: {exc}", kind="invalid")
                )
                continue
            if row["event_id"] in seen:
                self.repeats.append((row, event))
                continue
            started = time.perf_counter()
            try:
                template = chain_prepare(row, metadata_is_jcs=metadata_is_jcs)
            except CanonicalError as exc:
                self.result.rejected.append(_rejection(event, exc))
                continue
            finally:
                self.ledger_seconds += time.perf_counter() - started
            seen.add(row["event_id"])
            self.rows.append(row)
            self.originals[row["id"]] = event
            self.templates[row["id"]] = template


@dataclass
class _Attempt:
    batches: list[Batch]
    # id(batch) -> what this attempt did to it (discarded when the attempt fails)
    outcome: dict[int, IngestResult] = field(default_factory=dict)
    ledger_seconds: float = 0.0
    lock_seconds: float = 0.0  # the part of ledger_seconds spent in chain_head_lock
    # Per tenant, the sequence its first stored row gets (the head's, locked, plus one).
    first_sequence: dict[int, int] = field(default_factory=dict)
    # Later copies of an event_id in the transaction: (batch, row, event as received, the
    # first copy's (batch, row)), judged by _judge_repeats once the insert is done.
    repeats: list[tuple[Batch, dict, object, tuple[Batch, dict]]] = field(default_factory=list)
    # Per tenant, the client fields of the event_ids it had stored before (_stored_contents).
    stored_before: dict[int, dict[str, tuple]] = field(default_factory=dict)

    def of(self, batch: Batch) -> IngestResult:
        return self.outcome.setdefault(id(batch), IngestResult())


def _refusal(exc: Exception) -> str:
    if isinstance(exc, CanonicalError):
        return "ledger cannot hash the event"
    return "database refused the event"


def _rejection(event: object, exc: Exception) -> RejectedEvent:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return RejectedEvent(
        event=event,
        reason=f"{_refusal(exc)}: {first_line}"[:255],
        exception=f"{type(exc).__name__}: {exc}",
    )


_TENANTS_LOCKED = (
    # The table name comes from the model; the ids are a query parameter.
    f"ARRAY(SELECT id FROM {Tenant._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE)"  # noqa: S608
)


def _begin(*, tenant_ids: list[int]) -> set[int]:
    """Bound lock waits and statements; return which of the tenants exist, locked (one
    round trip).

    ``lock_timeout``/``statement_timeout`` (transaction-local) turn a locked table or a stuck
    statement into an OperationalError (55P03/57014), which the task retries with backoff,
    instead of a task that hangs towards RabbitMQ's 30 min consumer timeout. The events
    table has no foreign-key check on its tenant (migration 0006: it cost 15-25 % of each
    insert): the tenant rows are locked ``FOR KEY SHARE`` here instead, once per tenant, so
    a tenant cannot be deleted under the rows this transaction inserts.
    """
    sql = (
        "SELECT set_config('lock_timeout', %s, true), "
        f"set_config('statement_timeout', %s, true), {_TENANTS_LOCKED}"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                f"{int(settings.TRACELEDGER_INGEST_LOCK_TIMEOUT * 1000)}ms",
                f"{int(settings.TRACELEDGER_INGEST_STATEMENT_TIMEOUT * 1000)}ms",
                tenant_ids,
            ],
        )
        return set(cursor.fetchone()[2])


def _tenants_lock(tenant_ids: list[int]) -> set[int]:
    """Which of the tenants exist, locked as in ``_begin``."""
    if not tenant_ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_TENANTS_LOCKED}", [tenant_ids])
        return set(cursor.fetchone()[0])


def _stored_contents(*, tenant_id: int, event_ids: list[str]) -> dict[str, tuple]:
    """Of ``event_ids``, those the tenant has stored already, each with its stored
    ``CONTENT_COLUMNS`` (to tell a duplicate from a conflicting copy).

    One probe of the (tenant, event_id) unique index per id; ``LATERAL … LIMIT 1`` pins that
    plan. The plain ``event_id IN (…)`` form let PostgreSQL, with statistics older than the
    table's growth (autovacuum had not analyzed yet), scan the tenant's whole slice: 155 ms
    instead of 4 ms for 100 ids against 120k rows, most of a batch's time. Only a hit reads
    its row from the table, and hits are rare.
    """
    # The table name and the columns come from the model; every value is a query parameter.
    sql = (
        f"SELECT x.event_id, {', '.join(f'hit.{c}' for c in CONTENT_COLUMNS)} "  # noqa: S608
        "FROM unnest(%s::text[]) AS x(event_id) CROSS JOIN LATERAL "
        f"(SELECT {', '.join(CONTENT_COLUMNS)} FROM {AuditEvent._meta.db_table} AS e "
        "WHERE e.tenant_id = %s AND e.event_id = x.event_id LIMIT 1) AS hit"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [event_ids, tenant_id])
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _conflict(event: object, row: dict, differ: list[str]) -> RejectedEvent:
    """A later post under a stored event_id with other content: dead-lettered, so that it is
    kept and seen, not dropped like a retry (the ledger never changes a stored event)."""
    return RejectedEvent(
        event=event,
        reason=CONFLICT_REASON,
        kind="conflict",
        exception=(
            f"event_id {row['event_id'][:128]!r} is stored (id {row['id']}) with other "
            f"{', '.join(differ)}; the stored event is kept"
        ),
    )


def _duplicate_or_conflict(
    attempt: _Attempt, batch: Batch, row: dict, event: object, first: tuple
) -> None:
    differ = content_differences(row, first)
    if differ:
        attempt.of(batch).rejected.append(_conflict(event, row, differ))
    else:
        attempt.of(batch).duplicates += 1


def _new_rows_by_tenant(attempt: _Attempt) -> dict[int, list[tuple[Batch, dict]]]:
    """Rows to store per tenant, in message order: the first copy of each event_id. Later
    copies go to ``attempt.repeats`` with their first copy (``_judge_repeats``)."""
    by_tenant: dict[int, list[tuple[Batch, dict]]] = {}
    seen: dict[int, dict[str, tuple[Batch, dict]]] = {}
    for batch in attempt.batches:
        if batch.result.invalid:
            continue
        firsts = seen.setdefault(batch.tenant_id, {})
        for row in batch.rows:
            first = firsts.get(row["event_id"])
            if first is not None:
                attempt.repeats.append((batch, row, batch.originals[row["id"]], first))
                continue
            firsts[row["event_id"]] = (batch, row)
            by_tenant.setdefault(batch.tenant_id, []).append((batch, row))
        # Each has a first copy among the batch's rows (Batch.prepare), so in ``firsts``.
        attempt.repeats += [(batch, r, e, firsts[r["event_id"]]) for r, e in batch.repeats]
    return by_tenant


def _chain_heads(attempt: _Attempt, by_tenant: dict) -> dict[int, object]:
    """Lock each tenant's chain head (ascending tenant id, so two workers holding overlapping
    tenants never deadlock) and drop what the tenant has stored already. Returns the heads."""
    heads = {}
    for tenant_id in sorted(by_tenant):
        started = time.perf_counter()
        heads[tenant_id] = chain_head_lock(tenant_id=tenant_id)
        locking = time.perf_counter() - started
        attempt.ledger_seconds += locking
        attempt.lock_seconds += locking
        # Queried under the chain-head lock: a concurrent batch of this tenant has either
        # committed (and is visible here, READ COMMITTED) or is waiting behind us.
        pairs = by_tenant[tenant_id]
        existing = _stored_contents(
            tenant_id=tenant_id, event_ids=[row["event_id"] for _, row in pairs]
        )
        attempt.stored_before[tenant_id] = existing
        for batch, row in pairs:
            if row["event_id"] in existing:
                event = batch.originals[row["id"]]
                _duplicate_or_conflict(attempt, batch, row, event, existing[row["event_id"]])
        if existing:
            by_tenant[tenant_id] = [p for p in pairs if p[1]["event_id"] not in existing]
    return heads


def _insert_fast(attempt: _Attempt, by_tenant: dict, heads: dict, stored_at: datetime) -> None:
    """One ``chain_rows`` per tenant and one COPY for everything; no savepoint. A permanent
    error propagates and the caller redoes the transaction with ``_insert_isolated``."""
    everything = []
    for tenant_id, pairs in by_tenant.items():
        rows = [row for _, row in pairs]
        templates = [batch.templates[row["id"]] for batch, row in pairs]
        started = time.perf_counter()
        chain_rows(head=heads[tenant_id], rows=rows, templates=templates)
        attempt.ledger_seconds += time.perf_counter() - started
        everything += rows
    rows_copy(rows=everything, stored_at=stored_at)
    for pairs in by_tenant.values():
        for batch, row in pairs:
            attempt.of(batch).stored_ids.append(row["id"])


def _insert_isolated(attempt: _Attempt, by_tenant: dict, heads: dict, stored_at: datetime) -> None:
    """Row by row inside savepoints, to store everything but the rows the database refuses.
    The chain head is re-read after each rolled-back savepoint, so the chain stays gap-free."""
    for tenant_id, pairs in by_tenant.items():
        head = heads[tenant_id]
        for batch, row in pairs:
            sid = transaction.savepoint()
            try:
                started = time.perf_counter()
                chain_rows(head=head, rows=[row], templates=[batch.templates[row["id"]]])
                attempt.ledger_seconds += time.perf_counter() - started
                rows_copy(rows=[row], stored_at=stored_at)
            except PERMANENT_DB_ERRORS as exc:
                transaction.savepoint_rollback(sid)
                head.refresh_from_db()
                attempt.of(batch).rejected.append(_rejection(batch.originals[row["id"]], exc))
            else:
                transaction.savepoint_commit(sid)
                attempt.of(batch).stored_ids.append(row["id"])


def _judge_repeats(attempt: _Attempt) -> None:
    """Later copies of an event_id, after the insert: against the event stored before, else
    against the first copy if this transaction stored it, never against a first copy that
    conflicts. If the database refused that first copy (slow path), nothing is stored to
    compare with: the later copy is dead-lettered as not tried, to be replayed on its own."""
    for batch, row, event, (first_batch, first) in attempt.repeats:
        stored = attempt.stored_before[batch.tenant_id].get(row["event_id"])
        if stored is None and first["id"] in attempt.of(first_batch).stored_ids:
            stored = tuple(first[name] for name in CONTENT_COLUMNS)
        if stored is not None:
            _duplicate_or_conflict(attempt, batch, row, event, stored)
        else:
            attempt.of(batch).rejected.append(RejectedEvent(event=event, reason=BEHIND_REFUSED))


def _announce(attempt: _Attempt) -> None:
    """After commit, one ``events_ingested`` per tenant with every id it stored and the
    request each came from."""
    stored: dict[int, list[str]] = {}
    requests: dict[int, list[str | None]] = {}
    for batch in attempt.batches:
        ids = attempt.of(batch).stored_ids
        if ids:
            stored.setdefault(batch.tenant_id, []).extend(ids)
            requests.setdefault(batch.tenant_id, []).extend([batch.request_id] * len(ids))
    for tenant_id, ids in stored.items():
        # Rows were chained in this order, without gaps (a refused row's savepoint is rolled
        # back with its sequence), so ids[k] has sequence first + k.
        first = attempt.first_sequence[tenant_id]
        transaction.on_commit(
            lambda t=tenant_id, i=ids, f=first, r=requests[tenant_id]: events_ingested.send(
                sender=AuditEvent, tenant_id=t, event_ids=i, first_sequence=f, request_ids=r
            )
        )


def _store(attempt: _Attempt, *, more: Callable[[], list[Batch]] | None, isolate: bool) -> datetime:
    """One transaction over every batch of the attempt, plus those ``more`` adds."""
    with transaction.atomic():
        wanted = sorted({b.tenant_id for b in attempt.batches if not b.result.invalid})
        existing = _begin(tenant_ids=wanted)
        if more is not None:
            # Asked only now that the database has answered: during an outage no extra
            # message is taken (and requeued, which counts towards its delivery limit).
            extra = more()
            for batch in extra:
                batch.prepare()
            attempt.batches += extra
            new = {b.tenant_id for b in extra if not b.result.invalid} - set(wanted)
            existing |= _tenants_lock(sorted(new))
        for batch in attempt.batches:
            if not batch.result.invalid and batch.tenant_id not in existing:
                batch.result.invalid = f"tenant {batch.tenant_id} does not exist"
        by_tenant = _new_rows_by_tenant(attempt)
        heads = _chain_heads(attempt, by_tenant)
        attempt.first_sequence = {t: head.sequence + 1 for t, head in heads.items()}
        stored_at = timezone.now()
        by_tenant = {tenant_id: pairs for tenant_id, pairs in by_tenant.items() if pairs}
        if by_tenant:
            insert = _insert_isolated if isolate else _insert_fast
            insert(attempt, by_tenant, heads, stored_at)
        _judge_repeats(attempt)
        _announce(attempt)
    return stored_at


def events_ingest_many(
    batches: list[Batch], *, more: Callable[[], list[Batch]] | None = None
) -> list[Batch]:
    """Store several batches exactly once per (tenant, event_id), chained, in one transaction.

    ``more``, when given, is called once inside the transaction after the database has
    answered and returns further batches to store with these (the worker's extra messages).
    Returns every batch, each with its ``result``: stored ids, duplicates dropped, events to
    dead-letter on their own (invalid, or refused by the database), or ``invalid`` when the
    batch as a whole is unusable. Raises ``django.db.OperationalError`` (or another
    ``DatabaseError``) when the database is unavailable: the caller retries.
    """
    attempt = _Attempt(batches=list(batches))
    for batch in attempt.batches:
        batch.prepare()
    try:
        stored_at = _store(attempt, more=more, isolate=False)
    except PERMANENT_DB_ERRORS:
        # Rare: some row is refused. Redo everything row by row to store the others.
        attempt = _Attempt(batches=attempt.batches)
        stored_at = _store(attempt, more=None, isolate=True)
    stored = duplicates = 0
    for batch in attempt.batches:
        outcome = attempt.of(batch)
        batch.result.stored_ids = outcome.stored_ids
        batch.result.duplicates += outcome.duplicates
        batch.result.rejected += outcome.rejected
        stored += len(outcome.stored_ids)
        duplicates += batch.result.duplicates
        stored_ids = set(outcome.stored_ids)
        for row in batch.rows:
            if row["id"] in stored_ids:
                lag = (stored_at - row["received_at"]).total_seconds()
                metrics.INGEST_LAG.observe(max(0.0, lag))
    if stored:
        preparing = sum(batch.ledger_seconds for batch in attempt.batches)
        metrics.LEDGER_SECONDS.observe(preparing + attempt.ledger_seconds)
        metrics.LEDGER_LOCK_SECONDS.observe(attempt.lock_seconds)
    metrics.EVENTS_STORED.inc(stored)
    metrics.DUPLICATES_DROPPED.inc(duplicates)
    return attempt.batches


def events_ingest(*, tenant_id: int, events: list[dict]) -> IngestResult:
    """Store one batch (see ``events_ingest_many``); ``InvalidBatch`` when it is unusable."""
    (batch,) = events_ingest_many([Batch(tenant_id=tenant_id, events=events)])
    if batch.result.invalid:
        raise InvalidBatch(batch.result.invalid)
    return batch.result
