from django.urls import path

from audit.api.detail import AuditEventDetailView
from audit.api.export import AuditEventExportView
from audit.api.ledger import LedgerCheckpointListView, LedgerPublicKeyView, LedgerVerifyView
from audit.api.views import AuditEventCollectionView

urlpatterns = [
    path("audit-events", AuditEventCollectionView.as_view(), name="audit-event-collection"),
    # export before the detail route; <uuid:pk> would not match "export" anyway
    path("audit-events/export", AuditEventExportView.as_view(), name="audit-event-export"),
    path("audit-events/<uuid:pk>", AuditEventDetailView.as_view(), name="audit-event-detail"),
    path("ledger/verify", LedgerVerifyView.as_view(), name="ledger-verify"),
    path("ledger/checkpoints", LedgerCheckpointListView.as_view(), name="ledger-checkpoints"),
    path("ledger/public-key", LedgerPublicKeyView.as_view(), name="ledger-public-key"),
]
