"""Signals audit sends so that other apps (search) can react without audit importing them."""

from django.dispatch import Signal

# Sent after the ingest transaction commits. Keyword arguments:
#   tenant_id: int, event_ids: list[str] (the stored events' primary keys, as strings).
events_ingested = Signal()
