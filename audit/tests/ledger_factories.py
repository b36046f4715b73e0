"""Chained test events, written through the ledger's own chain API (not the ingest service)."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from audit.ledger.chain import chain_head_lock, chain_rows
from audit.models import AuditEvent


def event_row(*, tenant_id: int, n: int = 0, **overrides: Any) -> dict[str, Any]:
    """A full row dict, keyed by AuditEvent field names, as the ingest worker builds it."""
    occurred = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC) + timedelta(seconds=n)
    row = {
        "tenant_id": tenant_id,
        "id": str(uuid.uuid4()),
        "event_id": f"evt-{uuid.uuid4().hex}",
        "occurred_at": occurred,
        "received_at": occurred + timedelta(milliseconds=250),
        "action": "invoice.update",
        "outcome": "success",
        "severity": "info",
        "actor_id": f"user-{n}",
        "actor_type": "user",
        "actor_name": "Ada Lovelace",
        "target_id": f"inv-{n}",
        "target_type": "invoice",
        "target_name": "Invoice",
        "source_ip": "203.0.113.7",
        "user_agent": "pytest",
        "description": f"Ada changed invoice {n}",
        "metadata": {"n": n, "zeta": "last", "alpha": [1, 2.5, {"b": True, "a": None}]},
    }
    row.update(overrides)
    return row


def chained_events_create(
    *, tenant_id: int, count: int, start: int = 0, **overrides: Any
) -> list[AuditEvent]:
    """Insert ``count`` chained events in one transaction, as the ingest worker would."""
    rows = [event_row(tenant_id=tenant_id, n=start + i, **overrides) for i in range(count)]
    with transaction.atomic():
        head = chain_head_lock(tenant_id=tenant_id)
        chain_rows(head=head, rows=rows)
        return AuditEvent.objects.bulk_create([AuditEvent(**row) for row in rows])


@contextmanager
def ledger_guards_off() -> Iterator[None]:
    """Checkpoints and chain heads writable at will, as a database owner who disables the
    triggers of migration 0009 could make them: for tests of what verification catches."""
    tables = ("audit_checkpoint", "audit_chainhead")
    with transaction.atomic(), connection.cursor() as cursor:
        # ALTER TABLE refuses to run while this test's deferred FK checks are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        yield
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def events_tamper(statement: str, params=()) -> None:
    """Run SQL with the events' append-only trigger disabled, as a database owner could."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Fire the deferred FK checks of this test's inserts: ALTER TABLE refuses to run
        # while any are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER auditevent_append_only")
        cursor.execute(statement, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER auditevent_append_only")
