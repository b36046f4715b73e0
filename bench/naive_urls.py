"""The product's URLs plus the synchronous insert-per-request endpoint used as a baseline."""

from django.urls import path

from bench import NAIVE_PATH
from bench.naive import NaiveIngestView
from traceledger.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path(NAIVE_PATH, NaiveIngestView.as_view(), name="bench-naive-ingest"),
    *product_urlpatterns,
]
