"""An event's place in its tenant's hash chain, as shown on the event's admin page."""

from dataclasses import dataclass

from audit.ledger.canonical import GENESIS_HASH, CanonicalError, event_hash
from audit.models import AuditEvent


@dataclass(frozen=True)
class LedgerStatus:
    ok: bool
    detail: str


def ledger_status(*, event: AuditEvent) -> LedgerStatus:
    """Is the event's hash its own content chained to its predecessor's hash?

    Two index probes at most: the event itself is re-hashed, and its predecessor
    (tenant, sequence - 1) is read through the unique (tenant, sequence) index. The whole
    chain is verified by ``manage.py verify_ledger``; this checks one link.
    """
    try:
        recomputed = event_hash(event.prev_hash, event)
    except CanonicalError as exc:
        return LedgerStatus(False, f"cannot be re-hashed: {exc}")
    if recomputed != event.hash:
        return LedgerStatus(False, "its content does not match its hash (altered after chaining)")
    if event.sequence == 1:
        if event.prev_hash != GENESIS_HASH:
            return LedgerStatus(False, "first event of the chain, but prev_hash is not genesis")
        return LedgerStatus(True, "first event of the chain; hash matches its content")
    predecessor_hash = (
        AuditEvent.objects.filter(tenant_id=event.tenant_id, sequence=event.sequence - 1)
        .values_list("hash", flat=True)
        .first()
    )
    if predecessor_hash is None:
        return LedgerStatus(
            False, f"predecessor #{event.sequence - 1} is missing (purged or removed)"
        )
    if predecessor_hash != event.prev_hash:
        return LedgerStatus(
            False, f"prev_hash differs from the hash of predecessor #{event.sequence - 1}"
        )
    return LedgerStatus(
        True, f"hash matches its content and links to predecessor #{event.sequence - 1}"
    )
