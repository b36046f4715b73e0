"""Prometheus series of the ingest worker (``traceledger_`` prefix).

Counters and histograms only: in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, see
``traceledger/metrics.py``) each pool process writes its own file and ``/metrics`` sums them,
which works for these types without a per-metric ``multiprocess_mode``.
"""

from prometheus_client import Counter, Histogram

EVENTS_STORED = Counter(
    "traceledger_events_stored", "Audit events committed to PostgreSQL by the ingest worker."
)
DUPLICATES_DROPPED = Counter(
    "traceledger_events_duplicates_dropped",
    "Events dropped by the worker because their (tenant, event_id) was already stored.",
)
EVENTS_DEAD_LETTERED = Counter(
    "traceledger_events_dead_lettered",
    "Events the worker sent to audit.ingest.dlq on their own (invalid, refused by the "
    "database, or a conflicting duplicate: a stored event_id posted with other content).",
    ["reason"],
)
for _reason in ("invalid", "refused", "conflict"):  # at 0 from the start (see audit/metrics.py)
    EVENTS_DEAD_LETTERED.labels(reason=_reason)
BATCHES_REJECTED = Counter(
    "traceledger_ingest_batches_rejected",
    "Whole ingest messages rejected to the dead-letter queue (poison or retries exhausted).",
)
INGEST_RETRIES = Counter(
    "traceledger_ingest_retries",
    "Ingest tasks retried after a transient failure (database or broker away, a lock or "
    "statement timeout), by exception class. Celery's own retry line is throttled.",
    ["error"],
)
INGEST_LAG = Histogram(
    "traceledger_ingest_lag_seconds",
    "Time from received_at (API) to stored_at (worker commit), per event.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
LEDGER_SECONDS = Histogram(
    "traceledger_ingest_ledger_seconds",
    "Ledger time per transaction that stored rows: canonical form, chain-head locks, hashing.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LEDGER_LOCK_SECONDS = Histogram(
    "traceledger_ingest_ledger_lock_seconds",
    "The part of the ledger time spent taking the chain-head locks, waiting included: under "
    "load on one tenant, mostly waiting for another worker's transaction to commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SECONDS = Histogram(
    "traceledger_ingest_batch_seconds",
    "Wall time of one ingest task (validation, transaction, dead-lettering).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MESSAGES_PER_TRANSACTION = Histogram(
    "traceledger_ingest_messages_per_transaction",
    "Ingest messages stored in one transaction: the task's own plus those it coalesced.",
    buckets=(1, 2, 5, 10, 20, 50, 100),
)
