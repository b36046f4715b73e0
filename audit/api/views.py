"""One URL, two operations: POST ingests (``ingest.py``), GET lists (``listing.py``)."""

from rest_framework import generics
from rest_framework.permissions import IsAuthenticated

from accounts.permissions import CanIngest, CanRead
from accounts.ratelimits import IngestRateLimit, ReadRateLimit
from audit.api.ingest import IngestMixin
from audit.api.listing import EventListMixin


class AuditEventCollectionView(IngestMixin, EventListMixin, generics.GenericAPIView):
    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), CanIngest()]
        return [IsAuthenticated(), CanRead()]

    def get_throttles(self):
        # Per API key or user: POST counts against the ingest limit, GET the read limit.
        if self.request.method == "POST":
            return [IngestRateLimit()]
        return [ReadRateLimit()]
