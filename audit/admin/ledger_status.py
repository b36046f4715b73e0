"""An event's place in its tenant's hash chain, as shown on the event's admin page."""

import logging
from dataclasses import dataclass

from audit.ledger.signing import SigningKeyMissing
from audit.ledger.verify import ledger_verify
from audit.models import AuditEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerStatus:
    ok: bool
    detail: str


def ledger_status(*, event: AuditEvent) -> LedgerStatus:
    """Is the event's hash its own content chained to its predecessor's stored hash?

    The ledger's verifier over the one-event range ``[sequence, sequence]``: it re-hashes the
    event from its predecessor's hash (read through the unique (tenant, sequence) index) and
    checks signed checkpoints at that position. The whole chain is ``manage.py verify_ledger``.
    """
    try:
        result = ledger_verify(
            tenant_id=event.tenant_id, from_sequence=event.sequence, to_sequence=event.sequence
        )
    except SigningKeyMissing as exc:
        # A checkpoint at this position needs the public key: the page says so (and the log
        # has the details, as the API's 503 does), not a 500.
        logger.warning("event page: the ledger's keys cannot be used: %s", exc)
        return LedgerStatus(False, f"not checked: {exc.public_message}")
    if not result.ok:
        return LedgerStatus(False, f"at sequence {result.first_bad_sequence}: {result.reason}")
    if result.checked == 0:
        return LedgerStatus(False, "not checked: the event is beyond the tenant's chain head")
    link = "genesis" if event.sequence == 1 else f"predecessor #{event.sequence - 1}"
    return LedgerStatus(True, f"hash matches its content and links to {link}")
