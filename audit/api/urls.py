import uuid

from django.urls import path, register_converter

from audit.api.detail import AuditEventDetailView
from audit.api.export import AuditEventExportView
from audit.api.ledger import LedgerCheckpointListView, LedgerPublicKeyView, LedgerVerifyView
from audit.api.views import AuditEventCollectionView


class AnyCaseUUIDConverter:
    """Django's ``<uuid:>`` matches lower case only, so an upper-case id (RFC 9562 §4: hex
    digits are case-insensitive on input) would be "No API endpoint". The value is a
    ``uuid.UUID`` either way, written back in lower case."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value) -> str:
        return str(value).lower()


register_converter(AnyCaseUUIDConverter, "anycase_uuid")

urlpatterns = [
    path("audit-events", AuditEventCollectionView.as_view(), name="audit-event-collection"),
    # export before the detail route; an id would not match "export" anyway
    path("audit-events/export", AuditEventExportView.as_view(), name="audit-event-export"),
    path(
        "audit-events/<anycase_uuid:pk>",
        AuditEventDetailView.as_view(),
        name="audit-event-detail",
    ),
    path("ledger/verify", LedgerVerifyView.as_view(), name="ledger-verify"),
    path("ledger/checkpoints", LedgerCheckpointListView.as_view(), name="ledger-checkpoints"),
    path("ledger/public-key", LedgerPublicKeyView.as_view(), name="ledger-public-key"),
]
