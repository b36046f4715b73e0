"""Signals audit sends so that other apps (search) can react without audit importing them."""

from dataclasses import dataclass

from django.dispatch import Signal

# Sent after the ingest transaction commits. Keyword arguments:
#   tenant_id: int, event_ids: list[str] (the stored events' primary keys, as strings, in
#   chain order), first_sequence: int | None (the sequence of event_ids[0]; the ids then have
#   consecutive sequences, so a receiver need not read them back), request_ids:
#   list[str | None] (beside event_ids, one per id: the API request that sent the event, for
#   log lines; None when unknown).
events_ingested = Signal()

# Sent after a retention purge commits (``audit.ledger.services.events_purge``), with
# ``send_robust``: the purge is done and signed, so a receiver's error is logged and reported,
# never raised into it. Keyword arguments:
#   tenant_id: int, through_sequence: int (every event of the tenant with a sequence up to
#   it is gone, this purge's and any earlier one's), from_sequence: int (the first sequence
#   this purge removed).
# A receiver copies nothing of the purged events: they are gone. It removes what it derived
# from them (search entries and documents) and returns ``PurgeFollowUp``s, or None.
events_purged = Signal()


@dataclass(frozen=True)
class PurgeFollowUp:
    """What a receiver of ``events_purged`` did, told to whoever ran the purge
    (``manage.py purge_events`` prints it)."""

    message: str
    # False when something could not be done now; the message then says how it is caught up.
    done: bool = True
