"""The limit (PostgreSQL COPY of the same rows, made searchable) measured in the same run as
the product."""

import contextlib
import hashlib
import time
from datetime import UTC, datetime

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.cpu import machine_busy_seconds
from bench.environment import Services

SCRATCH_TABLE = "bench_copy_scratch"


def copy_rows(*, events: list[dict], tenant_id: int) -> list[tuple]:
    """The rows the worker would store for ``events``, ready for COPY (built before timing),
    each a tuple in the order of the worker's ``COLUMNS``."""
    import uuid

    from audit.services.event_rows import COLUMNS

    now = datetime.now(UTC)
    prev = "0" * 64
    rows = []
    for sequence, event in enumerate(events, start=1):
        digest = hashlib.sha256((prev + event["event_id"]).encode()).hexdigest()
        actor, target = event["actor"], event.get("target") or {}
        row = {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "event_id": event["event_id"],
            "occurred_at": event["occurred_at"],
            "received_at": now,
            "stored_at": now,
            "action": event["action"],
            "outcome": event.get("outcome", "success"),
            "severity": event.get("severity", "info"),
            "actor_id": actor["id"],
            "actor_type": actor.get("type", "user"),
            "actor_name": actor.get("name", ""),
            "target_id": target.get("id", ""),
            "target_type": target.get("type", ""),
            "target_name": target.get("name", ""),
            "source_ip": event.get("source_ip"),
            "user_agent": event.get("user_agent", ""),
            "description": event.get("description", ""),
            "metadata": Jsonb(event.get("metadata") or {}),
            "submitted_by": "api_key:benchkey",  # as the API sets it for a key
            "sequence": sequence,
            "prev_hash": prev,
            "hash": digest,
        }
        rows.append(tuple(row[column] for column in COLUMNS))
        prev = digest
    return rows


SEARCH_SCRATCH_TABLE = "bench_copy_search_scratch"


def copy_baseline(*, services: Services, rows: list[tuple]) -> dict:
    """The limit: COPY ``rows`` into a scratch table with every index of
    ``audit_auditevent`` and build their full-text vectors into a scratch table like
    ``search_eventsearchentry`` (its GIN index), with the product's own recipe, in one
    transaction timed from the first row to the commit. Issue 9 defines the limit so
    ("btree indexes plus a GIN full-text index"): the product's end-to-end figure counts an
    event once it is searchable. ``events_table_only`` is the same COPY without the
    full-text index, a stricter limit reported beside it."""
    events_only = _copy_timed(services=services, rows=rows, searchable=False)
    limit = _copy_timed(services=services, rows=rows, searchable=True)
    return {**limit, "events_table_only": events_only}


def _copy_timed(*, services: Services, rows: list[tuple], searchable: bool) -> dict:
    from audit.services.event_rows import COLUMNS  # the worker's own list; Django is set up
    from search.backends.postgresql import VECTOR_PARAMS, VECTOR_SQL

    table, search_table = sql.Identifier(SCRATCH_TABLE), sql.Identifier(SEARCH_SCRATCH_TABLE)
    with psycopg.connect(**services.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(table, search_table))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE audit_auditevent INCLUDING ALL)").format(table))
        scratch = [SCRATCH_TABLE]
        if searchable:
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE search_eventsearchentry INCLUDING ALL)").format(
                    search_table
                )
            )
            scratch.append(SEARCH_SCRATCH_TABLE)
        indexes = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = ANY(%s)", (scratch,)
        ).fetchone()[0]
        # Only reduces noise; a non-superuser may not, which is fine.
        with contextlib.suppress(psycopg.Error):
            conn.execute("CHECKPOINT")
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            table, sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        )
        # One statement over the whole scratch table: the fastest way to the same vectors.
        vectors = sql.SQL(
            "INSERT INTO {} (event_id, tenant_id, vector, indexed_at) "
            "SELECT e.id, e.tenant_id, {}, now() FROM {} e"
        ).format(search_table, sql.SQL(VECTOR_SQL), table)
        started = time.perf_counter()
        busy0, client0 = machine_busy_seconds(), time.process_time()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(copy) as cp:
                for row in rows:
                    cp.write_row(row)
            if searchable:
                cur.execute(vectors, VECTOR_PARAMS)
        seconds = time.perf_counter() - started
        busy, client = machine_busy_seconds() - busy0, time.process_time() - client0
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(table, search_table))
    return {
        "events": len(rows),
        "seconds": round(seconds, 3),
        "events_per_s": round(len(rows) / seconds, 1),
        "indexes": indexes,
        "full_text_index": searchable,
        # What the limit costs, to set beside the pipeline's CPU per event (bench/cpu.py).
        "machine_busy_ms_per_1000_events": round(1e6 * busy / len(rows), 1),
        "client_cpu_ms_per_1000_events": round(1e6 * client / len(rows), 1),
    }
