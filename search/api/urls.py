from django.urls import path

from search.api.views import AuditEventSearchView

urlpatterns = [
    path("audit-events/search", AuditEventSearchView.as_view(), name="audit-event-search"),
]
