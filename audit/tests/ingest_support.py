"""Helpers of the ingest worker tests: contract-shaped events, publishing, queue hygiene."""

import time
import uuid
from datetime import UTC, datetime, timedelta

from amqp.exceptions import ChannelError
from kombu import Connection

from audit.publisher import kwargs_repr
from audit.topology import topology_declare
from traceledger.celery import app
from traceledger.queues import DLQ, INGEST_QUEUE


def make_event(**overrides) -> dict:
    """One event exactly as the API publishes it (every key of the message contract)."""
    now = datetime.now(UTC)
    event = {
        "id": str(uuid.uuid4()),
        "event_id": f"evt-{uuid.uuid4().hex[:12]}",
        "occurred_at": (now - timedelta(seconds=3)).isoformat(timespec="microseconds"),
        "received_at": now.isoformat(timespec="microseconds"),
        "action": "invoice.update",
        "outcome": "success",
        "severity": "info",
        "actor_id": "user-42",
        "actor_type": "user",
        "actor_name": "Ada Lovelace",
        "target_id": "inv-7",
        "target_type": "invoice",
        "target_name": "Invoice 7",
        "source_ip": "203.0.113.9",
        "user_agent": "pytest/1.0",
        "description": "Ada changed the invoice total",
        "metadata": {"before": 10, "after": 12, "tags": ["a", "b"]},
    }
    event.update(overrides)
    return event


def publish(*, tenant_id: int, events: list[dict], request_id: str | None = "req-1") -> str:
    kwargs = {"tenant_id": tenant_id, "events": events, "request_id": request_id}
    result = app.send_task(
        "audit.ingest_batch",
        kwargs=kwargs,
        queue=INGEST_QUEUE,
        # As the web's publisher writes them (audit.publisher.task_message): never the events.
        argsrepr="()",
        kwargsrepr=kwargs_repr(kwargs),
    )
    return result.id


def settled_line(log: str, task_id: str) -> str | None:
    """The worker's log line saying how message ``task_id`` ended: its own task succeeded,
    or another task stored it in its transaction (coalesced)."""
    for line in log.splitlines():
        if f"{task_id}] succeeded" in line or f"ingest message {task_id} coalesced" in line:
            return line
    return None


def wait_until(predicate, *, timeout: float = 20, interval: float = 0.1, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def waiting_on_lock(cursor) -> bool:
    """Whether another session of this database waits for a lock (the worker, blocked on a
    row the test holds)."""
    # Inside a transaction pg_stat_activity is a snapshot taken at first use: refresh it.
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    return cursor.fetchone()[0] > 0


def purge_queues() -> None:
    """Declare the topology and empty this vhost's ingest, DLQ and delayed-retry queues."""
    with Connection(app.conf.broker_url) as conn:
        topology_declare(conn)
        channel = conn.default_channel
        for name in (INGEST_QUEUE.name, DLQ.name):
            channel.queue_purge(name)
        # Retries waiting in Celery's delayed-delivery queues would come back mid-test. A worker
        # declares all 28 at once, so when the first is missing (fresh vhost) none exist.
        for level in range(28):
            try:
                channel.queue_purge(f"celery_delayed_{level}")
            except ChannelError:
                break


def left_in_queue(name: str) -> set[str]:
    """Task ids of the messages still in the queue, taken off it. A test asserts on its own
    ids: a system event another test of this process recorded (a late confirm of its publish,
    which the product accepts as a harmless duplicate) may land meanwhile."""
    ids = set()
    with Connection(app.conf.broker_url) as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(name, no_ack=True)) is not None:
            ids.add(str((message.headers or {}).get("id")))
    return ids


def queue_depth(name: str) -> int:
    with Connection(app.conf.broker_url) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue=name, passive=True)
        return count
