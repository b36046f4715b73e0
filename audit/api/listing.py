"""GET /api/v1/audit-events (owned by the read work). Provides ``EventListMixin.get``."""


class EventListMixin:
    pass
