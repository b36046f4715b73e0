"""The ledger's cost: its share of the worker's time per batch, and events/s with and without
chaining (issue 9 target 4, issue 8 point 4).

Two measurements, both reported:

* **inside the worker** — the ingest worker times each batch (``traceledger_ingest_batch_seconds``)
  and the ledger part of it (``traceledger_ingest_ledger_seconds``: waiting for the chain-head
  lock plus hashing). The bench runs the worker with ``PROMETHEUS_MULTIPROC_DIR`` and reads
  both histograms' sums before and after each phase; share = Δledger / Δbatch.
* **in the harness process** — the worker's own service ``events_ingest`` is called on the
  same kind of batches, one after another, first as it is, then with ``chain_head_lock`` and
  ``chain_rows`` replaced (in this process only) by a counter that assigns sequences without
  a lock or a hash. The difference is what chaining costs, free of queueing and contention.
"""

import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import orjson

ZERO_HASH = "0" * 64
LEDGER = "traceledger_ingest_ledger_seconds"
LOCK = "traceledger_ingest_ledger_lock_seconds"
BATCH = "traceledger_ingest_batch_seconds"


def worker_timers(metrics_dir: Path) -> dict[str, float]:
    """Sums and counts of the worker's batch and ledger histograms, over every process."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    wanted = {f"{name}_{part}" for name in (LEDGER, LOCK, BATCH) for part in ("sum", "count")}
    values = dict.fromkeys(wanted, 0.0)
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name in wanted:
                values[sample.name] += sample.value
    return values


def share_between(before: dict[str, float], after: dict[str, float]) -> dict:
    ledger = after[f"{LEDGER}_sum"] - before[f"{LEDGER}_sum"]
    lock = after[f"{LOCK}_sum"] - before[f"{LOCK}_sum"]
    batch = after[f"{BATCH}_sum"] - before[f"{BATCH}_sum"]
    batches = int(after[f"{BATCH}_count"] - before[f"{BATCH}_count"])
    return {
        "batches": batches,
        "batch_seconds": round(batch, 3),
        "ledger_seconds": round(ledger, 3),
        "share": None if batch <= 0 else round(ledger / batch, 3),
        "ms_per_batch": None if not batches else round(1000 * batch / batches, 2),
        "ledger_ms_per_batch": None if not batches else round(1000 * ledger / batches, 2),
        # Of the ledger time, taking the chain-head locks (waiting for another process's
        # transaction on the same tenant, mostly); the rest is the canonical form and hashing.
        "lock_ms_per_batch": None if not batches else round(1000 * lock / batches, 2),
        "share_without_lock_wait": None if batch <= 0 else round((ledger - lock) / batch, 3),
    }


def worker_events(*, events: list[dict]) -> list[dict]:
    """API-shaped events as the API hands them to the worker: the API's own parser."""
    from audit.validation import MAX_EVENTS_PER_REQUEST, events_parse

    parsed = []
    for start in range(0, len(events), MAX_EVENTS_PER_REQUEST):
        chunk, _ = events_parse(orjson.dumps(events[start : start + MAX_EVENTS_PER_REQUEST]))
        parsed += chunk
    return parsed


@contextmanager
def _timed_ledger(timer: dict):
    """Wraps the service's ledger calls with timers (this process only)."""
    from audit.services import ingest

    lock, rows, prepare = ingest.chain_head_lock, ingest.chain_rows, ingest.chain_prepare

    def timed_prepare(row, **kwargs):
        t0 = time.perf_counter()
        try:
            return prepare(row, **kwargs)
        finally:
            timer["rows"] += time.perf_counter() - t0

    def timed_lock(**kwargs):
        t0 = time.perf_counter()
        try:
            return lock(**kwargs)
        finally:
            timer["lock"] += time.perf_counter() - t0

    def timed_rows(**kwargs):
        t0 = time.perf_counter()
        try:
            return rows(**kwargs)
        finally:
            timer["rows"] += time.perf_counter() - t0

    ingest.chain_head_lock, ingest.chain_rows = timed_lock, timed_rows
    ingest.chain_prepare = timed_prepare
    try:
        yield
    finally:
        ingest.chain_head_lock, ingest.chain_rows = lock, rows
        ingest.chain_prepare = prepare


@contextmanager
def _without_chaining():
    """No chain-head lock, no hashing: sequences from a counter (this process only)."""
    from django.db.models import Max

    from audit.models import AuditEvent, ChainHead
    from audit.services import ingest

    lock, rows = ingest.chain_head_lock, ingest.chain_rows
    counters: dict[int, int] = {}

    def no_lock(*, tenant_id):
        if tenant_id not in counters:
            # Other writers (the accounts receivers) may have chained events already.
            counters[tenant_id] = (
                AuditEvent.objects.filter(tenant_id=tenant_id).aggregate(m=Max("sequence"))["m"]
                or 0
            )
        return ChainHead(tenant_id=tenant_id, sequence=counters[tenant_id])

    def no_hash(*, head, rows, templates=None):
        sequence = head.sequence
        for row in rows:
            sequence += 1
            row["tenant_id"] = head.tenant_id
            row["sequence"] = sequence
            row["prev_hash"] = row["hash"] = ZERO_HASH
        counters[head.tenant_id] = head.sequence = sequence

    prepare = ingest.chain_prepare
    ingest.chain_head_lock, ingest.chain_rows = no_lock, no_hash
    ingest.chain_prepare = lambda row, **kwargs: (b"", b"")
    try:
        yield
    finally:
        ingest.chain_head_lock, ingest.chain_rows = lock, rows
        ingest.chain_prepare = prepare


def _ingest_all(*, tenant_id: int, batches: list[list[dict]]) -> tuple[float, int]:
    from audit.services.ingest import events_ingest

    stored = 0
    started = time.perf_counter()
    for batch in batches:
        stored += len(events_ingest(tenant_id=tenant_id, events=batch).stored_ids)
    return time.perf_counter() - started, stored


def _hashing_cpu_per_event(rows: list[dict]) -> float:
    """CPU µs per event of the ledger's hashing alone (``chain_cost``: the worker's
    canonical template + SHA-256, no database), on rows validated as the worker does."""
    from audit.ledger.chain import chain_cost
    from audit.services.event_rows import event_row

    sample = [event_row(tenant_id=1, event=r) for r in rows[:2000]]
    started = time.process_time()
    chain_cost(rows=sample)
    return round(1e6 * (time.process_time() - started) / max(len(sample), 1), 1)


def chaining_comparison(
    *, events: list[dict], batch_size: int, tenant_chain: int, tenant_plain: int
) -> dict:
    """events/s of the worker's service on the same batches with and without chaining."""
    rows = worker_events(events=events)
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    plain_batches = [
        [{**r, "id": str(uuid.uuid4()), "event_id": r["event_id"] + "-plain"} for r in b]
        for b in batches
    ]
    # Warm-up outside the clock (imports, prepared connections, the tenants' chain heads).
    _ingest_all(tenant_id=tenant_chain, batches=[batches[0]])
    with _without_chaining():
        _ingest_all(tenant_id=tenant_plain, batches=[plain_batches[0]])
    # Interleaved batch by batch, so drift in the machine's load hits both variants alike.
    timer = {"lock": 0.0, "rows": 0.0}
    chained_seconds = plain_seconds = 0.0
    chained = plain = 0
    for chained_batch, plain_batch in zip(batches[1:], plain_batches[1:], strict=True):
        with _timed_ledger(timer):
            seconds, stored = _ingest_all(tenant_id=tenant_chain, batches=[chained_batch])
        chained_seconds, chained = chained_seconds + seconds, chained + stored
        with _without_chaining():
            seconds, stored = _ingest_all(tenant_id=tenant_plain, batches=[plain_batch])
        plain_seconds, plain = plain_seconds + seconds, plain + stored
    hashing = _hashing_cpu_per_event(rows)
    return {
        "method": "events_ingest() called in the bench process on "
        f"{len(batches) - 1} batches of {batch_size} per variant, the variants alternating",
        "events": chained,
        "with_chaining_events_per_s": round(chained / chained_seconds, 1),
        "without_chaining_events_per_s": round(plain / plain_seconds, 1),
        "chaining_cost_us_per_event": round(
            1e6 * (chained_seconds / max(chained, 1) - plain_seconds / max(plain, 1)), 1
        ),
        "ledger_share_in_process": round((timer["lock"] + timer["rows"]) / chained_seconds, 3),
        "chain_head_lock_ms_per_batch": round(1000 * timer["lock"] / max(len(batches) - 1, 1), 2),
        "chain_rows_ms_per_batch": round(1000 * timer["rows"] / max(len(batches) - 1, 1), 2),
        "hashing_cpu_us_per_event": hashing,
        "stored_without_chaining": plain,
    }
