"""POST /api/v1/audit-events (owned by the ingest work). Provides ``IngestMixin.post``."""


class IngestMixin:
    pass
