"""A closed-loop HTTP load generator: N threads, one ``http.client`` connection each.

Bodies are serialised before the clock starts, so the generator's own work per request is a
send and a read; its CPU time is measured (``process_time`` of this process over the run)
and reported so a reader can see how much of the 2 cores it took from the system under test.
"""

import http.client
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# 429s are waited out (Retry-After) this many times per body before it counts as failed.
MAX_REFUSALS = 600
MAX_RETRY_AFTER = 5.0


@dataclass
class LoadResult:
    started: float = 0.0
    finished: float = 0.0
    requests: int = 0
    events_accepted: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    cpu_seconds: float = 0.0
    accepted_bodies: list[bytes] = field(default_factory=list)  # with record_bodies only

    @property
    def wall(self) -> float:
        return max(self.finished - self.started, 1e-9)


class LoadGenerator:
    """``run(bodies)`` posts every body once (retrying transient failures) and returns a result.

    ``ok_statuses`` are the success codes; anything else is an error, except connection
    failures and ``RETRYABLE_STATUSES``, which are retried on a fresh connection up to
    ``max_attempts`` times (the bodies carry event ids, so a retry is never a second event).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        headers: dict[str, str],
        clients: int = 16,
        ok_statuses: frozenset[int] = frozenset({200, 201, 202}),
        max_attempts: int = 5,
        timeout: float = 60.0,
    ):
        self.host, self.port, self.path = host, port, path
        self.headers = {"Content-Type": "application/json", **headers}
        self.clients = clients
        self.ok_statuses = ok_statuses
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.sent_events = 0  # read by the progress line; races are harmless
        self.record_bodies = False  # keep every accepted body (the soak checks them)
        self._spread: float | None = None
        self._lock = threading.Lock()

    def run(
        self,
        bodies: list[tuple[bytes, int]] | None = None,
        *,
        factory: Callable[[int], tuple[bytes, int]] | None = None,
        duration: float | None = None,
        spread: float | None = None,
    ) -> LoadResult:
        """Posts ``bodies`` once each, or ``factory(i)`` bodies until ``duration`` is over.

        ``spread`` (seconds, with ``bodies``): body ``i`` is not sent before
        ``i / len(bodies) * spread`` seconds into the run, so the posting lasts at least that
        long however fast the server answers (the soak's faults must meet it)."""
        if (bodies is None) == (factory is None):
            raise ValueError("pass bodies or factory")
        if factory is not None and duration is None:
            raise ValueError("a factory needs a duration")
        if spread is not None and bodies is None:
            raise ValueError("spread paces bodies, not a factory")
        self._spread = spread
        result = LoadResult()
        counter = itertools.count()
        self.sent_events = 0
        cpu0 = time.process_time()
        result.started = time.perf_counter()
        deadline = result.started + duration if duration else None
        threads = [
            threading.Thread(
                target=self._client,
                args=(bodies, factory, deadline, counter, result),
                daemon=True,
            )
            for _ in range(self.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.finished = time.perf_counter()
        result.cpu_seconds = time.process_time() - cpu0
        return result

    def _next(self, bodies, factory, deadline, counter, started):
        i = next(counter)
        if factory is not None:
            return factory(i) if time.perf_counter() < deadline else None
        if i >= len(bodies):
            return None
        if self._spread:
            time.sleep(max(0.0, started + self._spread * i / len(bodies) - time.perf_counter()))
        return bodies[i]

    def _client(self, bodies, factory, deadline, counter, result: LoadResult) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        latencies, statuses, errors, accepted_bodies = [], {}, [], []
        events = requests = retries = 0
        while (item := self._next(bodies, factory, deadline, counter, result.started)) is not None:
            body, count = item
            attempt = refusals = 0
            while True:
                t0 = time.perf_counter()
                retry_after = None
                try:
                    conn.request("POST", self.path, body, self.headers)
                    response = conn.getresponse()
                    payload = response.read()
                    status = response.status
                    retry_after = response.getheader("Retry-After")
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    status, payload = 0, repr(exc).encode()
                elapsed = time.perf_counter() - t0
                statuses[status] = statuses.get(status, 0) + 1
                if status in self.ok_statuses:
                    latencies.append(elapsed)
                    if self.record_bodies:
                        accepted_bodies.append(body)
                    events += count
                    self.sent_events += count
                    break
                if status == 429 and refusals < MAX_REFUSALS:
                    # Back-pressure (rate limit or ingest backlog): a well-behaved client
                    # waits as told and tries again; it is not a failed attempt.
                    refusals += 1
                    if deadline is not None and time.perf_counter() >= deadline:
                        break  # the timed run is over: this body is simply not sent
                    time.sleep(_seconds(retry_after))
                    continue
                attempt += 1
                if (status == 0 or status in RETRYABLE_STATUSES) and attempt < self.max_attempts:
                    retries += 1
                    time.sleep(min(0.05 * 2**attempt, 2.0))
                    continue
                errors.append(f"HTTP {status}: {payload[:300]!r}")
                break
            requests += 1
        conn.close()
        with self._lock:
            result.latencies.extend(latencies)
            result.events_accepted += events
            result.requests += requests
            result.retries += retries
            result.errors.extend(errors)
            result.accepted_bodies.extend(accepted_bodies)
            for status, n in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + n


def _seconds(retry_after: str | None) -> float:
    """``Retry-After`` in seconds (bounded), 1 s when missing or not a number."""
    try:
        return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return 1.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
