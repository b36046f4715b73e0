"""Stored audit events for read-side tests, written straight to the table.

The chain fields only need to be *valid-looking* for reads: ``sequence`` continues the
tenant's highest stored sequence and ``hash``/``prev_hash`` are real SHA-256 hex digests of
the event id, but nothing here recomputes the ledger (use ``ledger_factories`` for that).
"""

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Max

from audit.models import AuditEvent, ChainHead

BASE_TIME = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def event_build(*, tenant_id: int, n: int = 0, **overrides: Any) -> AuditEvent:
    """An unsaved event with every field filled; ``overrides`` win (``target=None`` clears
    the target)."""
    target = overrides.pop("target", {"id": f"inv-{n}", "type": "invoice", "name": "Invoice"})
    occurred = overrides.pop("occurred_at", BASE_TIME + timedelta(seconds=n))
    event_id = str(uuid.uuid4())
    fields = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "event_id": f"evt-{event_id}",
        "occurred_at": occurred,
        "received_at": occurred + timedelta(milliseconds=250),
        "action": "invoice.update",
        "outcome": "success",
        "severity": "info",
        "actor_id": f"user-{n}",
        "actor_type": "user",
        "actor_name": "Ada Lovelace",
        "target_id": (target or {}).get("id", ""),
        "target_type": (target or {}).get("type", ""),
        "target_name": (target or {}).get("name", ""),
        "source_ip": "203.0.113.7",
        "user_agent": "pytest",
        "description": f"Ada changed invoice {n}",
        "metadata": {"n": n, "nested": {"ok": True}},
        "sequence": 0,
        "prev_hash": "0" * 64,
        "hash": _digest(event_id),
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def events_create(
    *, tenant_id: int, count: int = 1, per_event=None, **overrides: Any
) -> list[AuditEvent]:
    """Insert ``count`` events in one statement, continuing the tenant's sequence
    and moving its ``ChainHead`` along (the worker then appends after them).

    ``per_event(i) -> dict`` gives each event its own overrides (on top of ``overrides``).
    """
    last = AuditEvent.objects.filter(tenant_id=tenant_id).aggregate(m=Max("sequence"))["m"] or 0
    head = ChainHead.objects.filter(tenant_id=tenant_id).first()
    if head is not None and head.sequence > last:
        last = head.sequence
    prev_hash = AuditEvent.objects.filter(tenant_id=tenant_id, sequence=last).values_list(
        "hash", flat=True
    ).first() or (head.hash if head is not None else "0" * 64)
    events = []
    for i in range(count):
        extra = {**overrides, **(per_event(i) if per_event else {})}
        event = event_build(tenant_id=tenant_id, n=last + i + 1, **extra)
        event.sequence = last + i + 1
        event.prev_hash = prev_hash
        prev_hash = event.hash
        events.append(event)
    AuditEvent.objects.bulk_create(events)
    # Keep the chain head in step, so the ingest worker appends after these events.
    ChainHead.objects.update_or_create(
        tenant_id=tenant_id, defaults={"sequence": last + count, "hash": prev_hash}
    )
    return events


def event_create(*, tenant_id: int, **overrides: Any) -> AuditEvent:
    return events_create(tenant_id=tenant_id, count=1, **overrides)[0]
