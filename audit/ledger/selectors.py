"""Reads of the ledger: chain positions, the stored chain in order, checkpoints."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from accounts.models import Tenant
from accounts.principal import Principal
from audit.ledger.canonical import CANONICAL_FIELDS, GENESIS_HASH
from audit.models import AuditEvent, ChainHead, Checkpoint
from audit.models.ledger import CheckpointKind

STREAM_FIELDS = (*CANONICAL_FIELDS, "prev_hash", "hash")


@dataclass(frozen=True)
class ChainBase:
    """Where verification starts: genesis, or the position after the latest purge."""

    sequence: int  # the last sequence *not* to be found in the table (0 at genesis)
    hash: str  # the hash the next event's prev_hash must equal
    checkpoint: Checkpoint | None  # the purge checkpoint, None at genesis


def chain_base(*, tenant_id: int) -> ChainBase:
    purge = (
        Checkpoint.objects.filter(tenant_id=tenant_id, kind=CheckpointKind.PURGE)
        .order_by("-sequence", "-id")
        .first()
    )
    if purge is None:
        return ChainBase(sequence=0, hash=GENESIS_HASH, checkpoint=None)
    return ChainBase(sequence=purge.sequence, hash=purge.hash, checkpoint=purge)


def chain_head_get(*, tenant_id: int) -> ChainHead:
    """The tenant's committed head; an unsaved genesis head when it has no events yet."""
    head = ChainHead.objects.filter(tenant_id=tenant_id).first()
    return head or ChainHead(tenant_id=tenant_id)


def chain_stream(
    *, tenant_id: int, from_sequence: int, to_sequence: int | None, chunk_size: int = 2000
) -> Iterator[dict[str, Any]]:
    """The stored events from ``from_sequence`` on, in chain order, as dicts of the hashed
    fields plus ``prev_hash``/``hash``; read through a server-side cursor, so memory stays
    flat for any tenant size (served by the unique (tenant, sequence) index)."""
    queryset = AuditEvent.objects.filter(tenant_id=tenant_id, sequence__gte=from_sequence)
    if to_sequence is not None:
        queryset = queryset.filter(sequence__lte=to_sequence)
    return queryset.order_by("sequence").values(*STREAM_FIELDS).iterator(chunk_size=chunk_size)


def chain_event_get(*, tenant_id: int, sequence: int) -> dict[str, Any] | None:
    return (
        AuditEvent.objects.filter(tenant_id=tenant_id, sequence=sequence)
        .values(*STREAM_FIELDS)
        .first()
    )


def chain_max_sequence(*, tenant_id: int) -> int | None:
    return (
        AuditEvent.objects.filter(tenant_id=tenant_id)
        .order_by("-sequence")
        .values_list("sequence", flat=True)
        .first()
    )


def chain_first_sequence(*, tenant_id: int, through: int) -> int | None:
    """The lowest stored sequence ≤ ``through`` (after a purge there should be none)."""
    if through <= 0:
        return None
    return (
        AuditEvent.objects.filter(tenant_id=tenant_id, sequence__lte=through)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )


def checkpoints_in_range(
    *, tenant_id: int, from_sequence: int, to_sequence: int | None
) -> list[Checkpoint]:
    queryset = Checkpoint.objects.filter(tenant_id=tenant_id, sequence__gte=from_sequence)
    if to_sequence is not None:
        queryset = queryset.filter(sequence__lte=to_sequence)
    return list(queryset.order_by("sequence", "id"))


def checkpoint_list(*, principal: Principal, tenant_id: int) -> QuerySet[Checkpoint]:
    """The checkpoints of ``tenant_id``, which the caller must be allowed to read, with their
    tenant (the API shows its slug beside the signed ``tenant_id``)."""
    if not principal.is_superuser and principal.tenant_id != tenant_id:
        return Checkpoint.objects.none()
    return (
        Checkpoint.objects.filter(tenant_id=tenant_id)
        .select_related("tenant")
        .order_by("-sequence", "-id")
    )


def ledger_tenant_ids() -> list[int]:
    """Every tenant with a chain head or any stored event, in id order (an event without a
    head would itself be a finding, so it must not be skipped)."""
    has_chain = Exists(ChainHead.objects.filter(tenant_id=OuterRef("pk"))) | Exists(
        AuditEvent.objects.filter(tenant_id=OuterRef("pk"))
    )
    return list(Tenant.objects.filter(has_chain).order_by("id").values_list("id", flat=True))


def tenant_by_slug(*, slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()
