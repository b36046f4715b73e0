"""One URL, two operations: POST ingests (``ingest.py``), GET lists (``listing.py``)."""

from rest_framework import generics
from rest_framework.permissions import IsAuthenticated

from accounts.permissions import CanIngest, CanRead
from audit.api.ingest import IngestMixin
from audit.api.listing import EventListMixin


class AuditEventCollectionView(IngestMixin, EventListMixin, generics.GenericAPIView):
    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), CanIngest()]
        return [IsAuthenticated(), CanRead()]
