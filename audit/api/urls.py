from django.urls import path

from audit.api.views import AuditEventCollectionView

urlpatterns = [
    path("audit-events", AuditEventCollectionView.as_view(), name="audit-event-collection"),
]
