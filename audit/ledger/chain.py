"""Appending to a tenant's hash chain, inside the ingest transaction.

Usage (the ingest service, ``audit.services.ingest``)::

    with transaction.atomic():
        head = chain_head_lock(tenant_id=tenant_id)
        rows = [r for r in rows if r["event_id"] not in stored]  # duplicates, read under the lock
        chain_rows(head=head, rows=rows)          # fills sequence, prev_hash, hash
        ...                                       # COPY the rows

The head row lock is what keeps the chain linear: a second worker on the same tenant waits
in ``chain_head_lock`` until the first commits, then reads the new head. Workers on other
tenants lock other rows and never wait. Duplicates are looked for *under* the lock: looked
for before it, two workers with the same event both find it new, and the second one's
insert fails on the unique index. Everything that needs no lock (validation, the canonical
form) is done before it, so the lock is held as briefly as possible.
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.ledger.canonical import (
    canonical_template,
    event_hash,
    event_hash_templated,
    parse_timestamp,
)
from audit.models import ChainHead

# Raw SQL for the two statements every ingest transaction runs under the lock: building
# them with the ORM cost ~1 ms of worker CPU each on the test VM, as much as storing a
# dozen events (docs/performance.md).
_HEAD_FIELDS = [field.attname for field in ChainHead._meta.concrete_fields]
_HEAD_LOCK_SQL = (
    f"SELECT {', '.join(_HEAD_FIELDS)} FROM {ChainHead._meta.db_table} "  # noqa: S608
    "WHERE tenant_id = %s FOR UPDATE"
)
_HEAD_MOVE_SQL = (
    f"UPDATE {ChainHead._meta.db_table} "  # noqa: S608
    "SET sequence = %s, hash = %s, updated_at = %s WHERE tenant_id = %s"
)


def chain_head_lock(*, tenant_id: int) -> ChainHead:
    """The tenant's chain head, created if missing, locked until the transaction ends."""
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "chain_head_lock() must run inside transaction.atomic(): the lock lives until commit"
        )
    with connection.cursor() as cursor:
        cursor.execute(_HEAD_LOCK_SQL, [tenant_id])
        row = cursor.fetchone()
        if row is None:
            # INSERT … ON CONFLICT DO NOTHING: two first writers of a new tenant both succeed
            # here, then the row lock serializes them.
            ChainHead.objects.bulk_create([ChainHead(tenant_id=tenant_id)], ignore_conflicts=True)
            cursor.execute(_HEAD_LOCK_SQL, [tenant_id])
            row = cursor.fetchone()
    return ChainHead.from_db(connection.alias, _HEAD_FIELDS, row)


def chain_prepare(row: dict[str, Any], *, metadata_is_jcs: bool = False) -> tuple[bytes, bytes]:
    """The row's canonical form without its sequence, computed before the lock is taken
    (it is most of the hashing cost); pass it to ``chain_rows`` as ``templates``. Raises
    ``CanonicalError`` when the row cannot be hashed. Timestamps given as ISO strings are
    replaced by aware datetimes, so what is inserted is what was hashed.
    ``metadata_is_jcs``: see ``canonical_template``."""
    for field in ("occurred_at", "received_at"):
        value = row[field]
        if type(value) is not datetime or value.tzinfo is not UTC:
            row[field] = parse_timestamp(value)
    return canonical_template(row, metadata_is_jcs=metadata_is_jcs)


def chain_rows(
    *,
    head: ChainHead,
    rows: list[dict[str, Any]],
    templates: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Give each row, in order, ``sequence``, ``prev_hash`` and ``hash``; advance ``head``.

    ``head`` must come from ``chain_head_lock`` in the current transaction. ``templates``
    (``chain_prepare`` of each row, same order) leaves only SHA-256 to do under the lock.
    """
    if templates is not None and len(templates) != len(rows):
        raise ValueError("one template per row")
    sequence, prev_hash = head.sequence, head.hash
    for index, row in enumerate(rows):
        tenant_id = row.get("tenant_id", head.tenant_id)
        if tenant_id != head.tenant_id:
            raise ValueError(
                f"row of tenant {tenant_id} cannot join tenant {head.tenant_id}'s chain"
            )
        row["tenant_id"] = head.tenant_id
        sequence += 1
        row["sequence"] = sequence
        row["prev_hash"] = prev_hash
        if templates is None:
            for field in ("occurred_at", "received_at"):
                row[field] = parse_timestamp(row[field])
            prev_hash = event_hash(prev_hash, row)
        else:
            prev_hash = event_hash_templated(prev_hash, templates[index], sequence)
        row["hash"] = prev_hash
    if rows:
        head.sequence, head.hash, head.updated_at = sequence, prev_hash, timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(_HEAD_MOVE_SQL, [sequence, prev_hash, head.updated_at, head.tenant_id])


def chain_cost(*, rows: Iterable[tuple[dict[str, Any], bool]], prev_hash: str = "0" * 64) -> str:
    """Hash ``rows`` — pairs of a row and its ``metadata_is_jcs``, as the worker's validation
    returns them — as the ingest worker does (``chain_prepare``, then SHA-256 of each
    template), without a database: for the benchmark to time the ledger's CPU per event.
    Returns the last hash."""
    for sequence, (row, metadata_is_jcs) in enumerate(rows, start=1):
        template = chain_prepare({**row}, metadata_is_jcs=metadata_is_jcs)
        prev_hash = event_hash_templated(prev_hash, template, sequence)
    return prev_hash
