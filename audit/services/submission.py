"""Hand accepted events to the ingest pipeline: RabbitMQ when it confirms in time, else the
outbox table. Used by the ingest API and by other apps recording their own audit events.

202 means durable (ARCHITECTURE §5): this returns only once RabbitMQ confirmed the message
or the outbox row is committed, and raises ``IngestUnavailable`` when neither happened.
"""

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError

from accounts.services import SYSTEM_TENANT_SLUG
from audit import metrics
from audit.publisher import (
    BrokerSkipped,
    PublishError,
    PublishInFlight,
    ingest_backlog,
    late_confirm_seconds,
    publish_ingest_batch,
)
from audit.validation import InvalidEvents, event_normalize
from traceledger.errors import DependencyUnavailable, Overloaded
from traceledger.request_id import current_request_id

logger = logging.getLogger(__name__)


class IngestUnavailable(DependencyUnavailable):
    """Neither RabbitMQ nor PostgreSQL took the events: nothing was accepted (→ 503 from
    whichever view needed them: the ingest API, or a read whose access record failed)."""


class IngestBacklogged(Overloaded):
    """``audit.ingest`` holds more requests than the workers should be behind (→ 429)."""


def ingest_admit() -> None:
    """Refuse new events while the ingest queue is over ``TRACELEDGER_INGEST_MAX_BACKLOG``.

    Without it a client faster than the workers grows the backlog, and the lag between
    202 and searchable, for as long as it keeps posting (issue 9 target 3). Refusing is
    cheap, happens before the body is parsed, and accepts nothing: the client retries after
    ``Retry-After`` with the same ``event_id``s. Unknown depth (broker unreachable, reading
    stale) admits: the outbox path has its own bounds.
    """
    limit = settings.TRACELEDGER_INGEST_MAX_BACKLOG
    if not limit:
        return
    backlog = ingest_backlog()
    if backlog is not None and backlog >= limit:
        metrics.REFUSED_FOR_BACKLOG.inc()
        wait = settings.TRACELEDGER_INGEST_BACKLOG_RETRY_AFTER
        raise IngestBacklogged(
            f"The ingest queue holds {backlog} requests, the limit is {limit}: nothing was "
            "accepted. Retry with the same event_ids.",
            retry_after=wait,
        )


# ``AuditEvent.submitted_by`` of the records TraceLedger makes itself (record_system_event).
SYSTEM_SUBMITTER = "traceledger"


def ingest_payload(
    *, tenant_id: int, events: list[dict], request_id: str | None, submitted_by: str = ""
) -> dict:
    """The ``audit.ingest_batch`` keyword arguments; also what an outbox row stores."""
    payload = {"tenant_id": tenant_id, "events": events, "request_id": request_id}
    if submitted_by:
        payload["submitted_by"] = submitted_by
    return payload


def events_submit(
    *, tenant_id: int, events: list[dict], request_id: str | None, submitted_by: str = ""
) -> str:
    """Make ``events`` (normalised flat dicts, see ``audit.validation``) durable.

    Returns ``"broker"`` or ``"outbox"``. Outside a transaction the outbox row is committed
    on return; inside the caller's transaction it commits (or rolls back) with it.
    """
    payload = ingest_payload(
        tenant_id=tenant_id, events=events, request_id=request_id, submitted_by=submitted_by
    )
    unconfirmed: PublishError | None = None
    try:
        publish_ingest_batch(payload)
    except BrokerSkipped:
        metrics.PUBLISH_FAILURES.labels(reason="skipped").inc()
        error = BREAKER_OPEN
    except PublishError as exc:
        metrics.PUBLISH_FAILURES.labels(reason="unconfirmed").inc()
        error, unconfirmed = str(exc), exc
    else:
        metrics.EVENTS_ACCEPTED.labels(path="broker").inc(len(events))
        return "broker"

    from audit.services.outbox import outbox_message_create

    try:
        outbox_message_create(payload=payload, error=error)
    except DatabaseError as exc:
        if error == BREAKER_OPEN and _broker_took_it_after_all(payload, events):
            return "broker"
        if _confirmed_late(unconfirmed):
            metrics.EVENTS_ACCEPTED.labels(path="broker").inc(len(events))
            return "broker"
        logger.error(
            "ingest refused: broker and database both unavailable",
            extra={"tenant_id": tenant_id, "events": len(events), "error": repr(exc)},
        )
        raise IngestUnavailable("Neither the broker nor the database accepted the events.") from exc
    metrics.EVENTS_ACCEPTED.labels(path="outbox").inc(len(events))
    return "outbox"


BREAKER_OPEN = "circuit breaker open"


def _broker_took_it_after_all(payload: dict, events: list[dict]) -> bool:
    """The broker, tried once more in spite of its open breaker, when the outbox is down too.

    The breaker skips RabbitMQ for up to its reset timeout after an outage: if PostgreSQL
    went down in that window, requests were answered 503 "neither accepted" while RabbitMQ
    had been back for seconds (API client QA). One forced publish, within the publish
    timeout, before refusing; it closes the breaker when it goes through."""
    try:
        publish_ingest_batch(payload, force=True)
    except PublishError:
        return False
    metrics.EVENTS_ACCEPTED.labels(path="broker").inc(len(events))
    return True


def _confirmed_late(unconfirmed: PublishError | None) -> bool:
    """A message the publisher thread had sent when the request stopped waiting, confirmed
    while the outbox failed: answering 503 "nothing was accepted" then was false, and a
    client retrying events without event_ids stored them twice (code review). Waited for
    only when the outbox is down too, as long as the thread waits for a confirm."""
    if not isinstance(unconfirmed, PublishInFlight):
        return False
    return unconfirmed.confirmed_within(late_confirm_seconds())


def system_tenant_id() -> int:
    from accounts.services import tenant_get_or_create

    tenant, _ = tenant_get_or_create(slug=SYSTEM_TENANT_SLUG, name="System")
    return tenant.pk


def record_system_event(
    *,
    tenant_id: int | None,
    action: str,
    actor_id: str,
    actor_type: str = "user",
    actor_name: str = "",
    target_id: str = "",
    target_type: str = "",
    target_name: str = "",
    description: str = "",
    metadata: dict | None = None,
    outcome: str = "success",
    severity: str = "info",
    with_transaction: bool = False,
) -> str:
    """Record something TraceLedger itself did (a key created, a dead letter replayed) in a
    tenant's trail, or the system tenant's when ``tenant_id`` is None. Returns the event id.

    The event goes through the same validation as the API (``ValueError`` naming the bad
    fields when it is not a valid event) and the same durable submission. Called inside a
    transaction, the broker copy may be published before that transaction commits; call it
    from ``transaction.on_commit`` when the event must not outlive a rollback, or pass
    ``with_transaction`` (inside the transaction of the change it records) for a record
    that commits with the change, as an outbox row published right after the commit.
    """
    if tenant_id is None:
        # First, so that the system tenant's own creation, recorded when this first record
        # makes it, carries a time before this record's.
        tenant_id = system_tenant_id()
    data = {
        "occurred_at": datetime.now(UTC).isoformat(),
        "action": action,
        "actor": {"id": actor_id, "type": actor_type, "name": actor_name},
        "outcome": outcome,
        "severity": severity,
        "description": description,
        "metadata": metadata or {},
    }
    if target_id or target_type or target_name:
        data["target"] = {"id": target_id, "type": target_type, "name": target_name}
    try:
        # With the tenant, the id derives from (tenant, event_id) as for the API: a client
        # event later sent with this event_id is answered with this event's id.
        event = event_normalize(data, tenant_id=tenant_id)
    except InvalidEvents as exc:
        raise ValueError(f"invalid system event {action!r}: {exc.fields}") from None
    submission = {
        "tenant_id": tenant_id,
        "events": [event],
        "request_id": current_request_id() or None,
        "submitted_by": SYSTEM_SUBMITTER,
    }
    if with_transaction:
        from audit.services.outbox import outbox_message_in_transaction

        outbox_message_in_transaction(payload=ingest_payload(**submission))
    else:
        events_submit(**submission)
    return event["id"]
