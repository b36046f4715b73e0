"""Prometheus series of the read side (``traceledger_`` prefix).

Counters and histograms only, so multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) needs no
per-metric ``multiprocess_mode``. Labels are small closed sets (endpoint, principal kind).
"""

from prometheus_client import Counter, Histogram

READ_LATENCY = Histogram(
    "traceledger_read_request_seconds",
    "Time to answer a read endpoint (export: time to first byte, the stream is not timed).",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
READ_REQUESTS = Counter(
    "traceledger_read_requests",
    "Read requests by endpoint and caller kind (service-key reads are counted here only; "
    "a person's reads are also recorded as audit_log.* events).",
    ["endpoint", "principal_kind"],
)
EVENT_CACHE = Counter(
    "traceledger_event_cache",
    "Detail-read cache look-ups in Redis, by result (hit or miss; a Redis outage is a miss).",
    ["result"],
)
EXPORTED_ROWS = Counter(
    "traceledger_export_rows", "Events written to export streams, by format.", ["format"]
)
