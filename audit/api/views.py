"""One URL, two operations: POST ingests (``ingest.py``), GET lists (``listing.py``)."""

from rest_framework import generics
from rest_framework.permissions import IsAuthenticated

from accounts.permissions import CanIngest, CanRead
from accounts.ratelimits import IngestRateLimit, ReadRateLimit
from audit.api.ingest import IngestMixin
from audit.api.listing import EventListMixin
from audit.services.submission import ingest_admit


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

    def check_throttles(self, request):
        if request.method == "POST":
            # After authentication and permissions, before the rate limit counts the request:
            # a post refused while the workers catch up is not one the client made, and a
            # client obeying its Retry-After ran into its own rate limit next.
            ingest_admit()
        super().check_throttles(request)
