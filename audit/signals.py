"""Signals audit sends so that other apps (search) can react without audit importing them."""

from django.dispatch import Signal

# Sent after the ingest transaction commits. Keyword arguments:
#   tenant_id: int, event_ids: list[str] (the stored events' primary keys, as strings, in
#   chain order), first_sequence: int | None (the sequence of event_ids[0]; the ids then have
#   consecutive sequences, so a receiver need not read them back), request_ids:
#   list[str | None] (beside event_ids, one per id: the API request that sent the event, for
#   log lines; None when unknown).
events_ingested = Signal()
