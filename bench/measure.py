"""Measuring one ingest phase: post, then watch the database until every event is stored."""

import sys
import threading
import time

import psycopg

from bench.environment import QueueDepth, Services
from bench.loadgen import LoadGenerator, LoadResult, percentile


class StoreWatcher(threading.Thread):
    """Polls how many events of a tenant are stored (and the ingest queue depth).

    The chain head's ``sequence`` is the number of chained events (the chain is gap-free), so
    one primary-key read per poll; ``count(*)`` only while no chain head exists yet.
    """

    def __init__(self, *, services: Services, tenant_id: int, expect: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.services, self.tenant_id, self.expect = services, tenant_id, expect
        self.interval = interval
        self.started = time.perf_counter()
        self.stored = 0
        self.done_at: float | None = None
        self.depth: int | None = None
        self.depth_samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        depth_reader = QueueDepth(self.services.broker_url)
        last_depth = 0.0
        try:
            with psycopg.connect(**self.services.conninfo(), autocommit=True) as conn:
                while not self._halt.is_set():
                    self.stored = stored_count(conn, self.tenant_id)
                    now = time.perf_counter()
                    if now - last_depth >= 1.0:
                        last_depth = now
                        self.depth = depth_reader.read()
                        if self.depth is not None:
                            self.depth_samples.append((round(now - self.started, 2), self.depth))
                    if self.stored >= self.expect:
                        self.done_at = now
                        return
                    self._halt.wait(self.interval)
        finally:
            depth_reader.close()


def stored_count(conn, tenant_id: int) -> int:
    row = conn.execute(
        "SELECT sequence FROM audit_chainhead WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    if row and row[0]:
        return row[0]
    return conn.execute(
        "SELECT count(*) FROM audit_auditevent WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()[0]


class Progress(threading.Thread):
    """One progress line, rewritten in place on a terminal, every few seconds otherwise."""

    def __init__(self, *, label: str, total: int, generator: LoadGenerator, watcher=None):
        super().__init__(daemon=True)
        self.label, self.total, self.generator, self.watcher = label, total, generator, watcher
        self._halt = threading.Event()
        self.tty = sys.stderr.isatty()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        if self.tty:
            sys.stderr.write("\n")
        else:
            self._line()

    def _line(self) -> None:
        posted = self.generator.sent_events
        total = f"/{self.total}" if self.total else ""
        text = f"  {self.label:<22} posted {posted:>7}{total}"
        if self.watcher is not None:
            text += f"  stored {self.watcher.stored:>7}"
            if self.watcher.depth is not None:
                text += f"  queue {self.watcher.depth:>5}"
        if self.tty:
            sys.stderr.write("\r" + text.ljust(79))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def run(self) -> None:
        interval = 0.5 if self.tty else 5.0
        while not self._halt.wait(interval):
            self._line()


def db_figures(*, services: Services, tenant_id: int, prefix: str) -> dict:
    """Count, distinct event ids and ingest lag (stored_at - received_at) of one phase's
    events (their event ids start with ``prefix``)."""
    with psycopg.connect(**services.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            """
            SELECT count(*), count(DISTINCT event_id),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY lag),
                   max(lag)
            FROM (SELECT event_id, extract(epoch FROM stored_at - received_at) AS lag
                  FROM audit_auditevent WHERE tenant_id = %s AND event_id LIKE %s) AS t
            """,
            (tenant_id, prefix.replace("_", r"\_") + "%"),
        ).fetchone()
    stored, distinct, p50, p99, lag_max = row
    return {
        "stored": stored,
        "distinct_event_ids": distinct,
        "lag_p50_ms": _ms(p50),
        "lag_p99_ms": _ms(p99),
        "lag_max_ms": _ms(lag_max),
    }


def searchable_count(*, tenant_id: int, token: str) -> int | None:
    """Events of the tenant that the registered search backend finds; None without one."""
    from audit.models import AuditEvent
    from audit.ports import event_search

    try:
        return event_search(AuditEvent.objects.filter(tenant_id=tenant_id), token).count()
    except RuntimeError:
        return None


def _ms(seconds) -> float | None:
    return None if seconds is None else round(float(seconds) * 1000, 1)


def latency_figures(result: LoadResult) -> dict:
    return {
        "post_p50_ms": _ms(percentile(result.latencies, 50)),
        "post_p99_ms": _ms(percentile(result.latencies, 99)),
    }


def loadgen_figures(result: LoadResult) -> dict:
    return {
        "requests": result.requests,
        "retries": result.retries,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": result.errors[:5],
        "error_count": len(result.errors),
        "loadgen_cpu_s": round(result.cpu_seconds, 2),
        "loadgen_cpu_per_request_us": round(1e6 * result.cpu_seconds / max(result.requests, 1)),
    }
