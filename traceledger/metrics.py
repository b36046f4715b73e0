"""Prometheus metrics. Our own series are prefixed ``traceledger_``.

With several processes (gunicorn workers, Celery workers) set ``PROMETHEUS_MULTIPROC_DIR``
to a shared empty folder (``make run`` does); each process then writes its counters there
and ``/metrics`` aggregates them. Apps define their metrics in their own ``metrics.py``.
"""

import os

from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

# Collectors that compute gauges at scrape time (queue depths, lag): apps append here.
SCRAPE_COLLECTORS: list = []


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return registry


@never_cache
@require_safe
def metrics_view(request):
    output = generate_latest(_registry())
    if SCRAPE_COLLECTORS:
        scrape = CollectorRegistry()
        for collector in SCRAPE_COLLECTORS:
            scrape.register(collector)
        output += generate_latest(scrape)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
