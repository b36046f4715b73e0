"""A RabbitMQ resource alarm (ARCHITECTURE §7, "RabbitMQ blocked"): while the broker blocks
every connection that publishes, the API keeps accepting into the outbox and the worker keeps
draining the queue, the one thing that ends a memory alarm. Real alarm, real worker.

The alarm is the node's memory watermark set to one byte (``rabbitmqctl``): node-wide, so it
is always lifted again, whatever the test did.
"""

import contextlib
import shutil
import socket
import struct
import subprocess
from socket import SO_RCVTIMEO, SO_SNDTIMEO
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from audit.models import AuditEvent, OutboxMessage
from audit.publisher import publisher_reset
from audit.services.outbox import outbox_relay
from audit.tests.ingest_api_support import post_json, valid_event
from audit.tests.ingest_support import make_event, publish, queue_depth, settled_line, wait_until
from search.models import EventSearchEntry
from search.services import search_sweep
from testsupport.worker import WorkerProcess
from traceledger.celery import app
from traceledger.health import readiness
from traceledger.queues import INGEST_QUEUE, SEARCH_QUEUE_NAME

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_queues"),
]

IO_TIMEOUT = 2  # the worker's TRACELEDGER_BROKER_IO_TIMEOUT: short, to keep the test short


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def _broker_is_local() -> bool:
    host = urlsplit(settings.CELERY_BROKER_URL).hostname or "localhost"
    return shutil.which("rabbitmqctl") is not None and host in ("localhost", "127.0.0.1", "::1")


def _alarmed() -> bool:
    return "resource_limit" in _rabbitmqctl("eval", "rabbit_alarm:get_alarms().")


@contextlib.contextmanager
def memory_alarm():
    """The node refuses to read from publishing connections until the block ends."""
    watermark = _rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    _rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1")
    try:
        wait_until(_alarmed, timeout=20, interval=0.5, what="the memory alarm")
        yield
    finally:
        if watermark.startswith("{absolute,"):
            _rabbitmqctl("set_vm_memory_high_watermark", "absolute", watermark[10:-1])
        else:
            _rabbitmqctl("set_vm_memory_high_watermark", watermark)
        wait_until(lambda: not _alarmed(), timeout=30, interval=0.5, what="the alarm lifted")


@pytest.mark.skipif(not _broker_is_local(), reason="needs rabbitmqctl for the test broker")
def test_the_worker_drains_and_the_api_accepts_through_a_memory_alarm(tenant, key_client):
    client = key_client(scopes=["ingest"])
    # Waiting before the alarm: one transaction takes at most two messages, so draining all
    # of them takes several transactions, each of which stores, then queues indexing.
    events = [make_event() for _ in range(6)]
    task_ids = [publish(tenant_id=tenant.pk, events=[event]) for event in events]
    worker = WorkerProcess(
        queues=f"{INGEST_QUEUE.name},{SEARCH_QUEUE_NAME}",
        extra_env={
            "TRACELEDGER_BROKER_IO_TIMEOUT": str(IO_TIMEOUT),
            "TRACELEDGER_INGEST_COALESCE_MESSAGES": "1",
        },
    )
    publisher_reset()
    try:
        with memory_alarm():
            # A worker started during the alarm gets as far as consuming (its event
            # heartbeat, published before "ready.", used to wait for ever) ...
            worker.start()
            # ... and every message ends: stored and acked, although no index task could be
            # queued (each publish waited for a confirm, then a channel close, for ever).
            wait_until(
                lambda: all(settled_line(worker.log(), task_id) for task_id in task_ids),
                timeout=60,
                what="every waiting message settled during the alarm",
            )
            stored = AuditEvent.objects.filter(
                tenant=tenant, event_id__in=[event["event_id"] for event in events]
            )
            assert stored.count() == len(events)
            # The first failed publish paused this process's index publishing; the others
            # did not wait again.
            assert worker.log().count("search indexing not queued") == 1, worker.log()

            # Readiness says so, though a connection opens as usual and the publish breaker
            # is closed (it said "ok" through a whole alarm).
            assert readiness()["checks"]["broker"] == "down"

            # The API gives up on the blocked broker within its publish timeout: 202, kept
            # in the outbox.
            response = post_json(client, valid_event(event_id="during-the-alarm"))
            assert response.status_code == 202, response.content
            assert OutboxMessage.objects.count() == 1

        publisher_reset()  # the breaker the post opened: closed, as after its reset time
        assert readiness()["checks"]["broker"] == "ok"
        # Lifted: the relay republishes the outbox, the sweep indexes what the signal could
        # not queue, and nothing accepted is missing.
        wait_until(lambda: outbox_relay().relayed == 1, timeout=20, what="the outbox relayed")
        wait_until(
            lambda: AuditEvent.objects.filter(tenant=tenant, event_id="during-the-alarm").exists(),
            timeout=30,
            what="the outbox's event stored",
        )
        search_sweep()
        ours = AuditEvent.objects.filter(
            tenant=tenant,
            event_id__in=[*(event["event_id"] for event in events), "during-the-alarm"],
        )
        assert ours.count() == len(events) + 1
        indexed = set(EventSearchEntry.objects.values_list("event_id", flat=True))
        assert set(ours.values_list("pk", flat=True)) <= indexed
        # The API's publish that the alarm held may still land: a duplicate, dropped.
        wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 0, what="audit.ingest drained")
        assert ours.count() == len(events) + 1
    finally:
        worker.stop()
        publisher_reset()


def test_celerys_own_broker_connections_carry_the_configured_socket_bound():
    """What bounds a publish during an alarm: TRACELEDGER_BROKER_IO_TIMEOUT reaches the
    socket of the connections Celery publishes with (the alarm test passes without it, only
    slower, so the bound itself is checked here)."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        sock = conn.connection.transport.sock
        seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, 16))
        assert seconds + micros / 1e6 == pytest.approx(settings.TRACELEDGER_BROKER_IO_TIMEOUT)
        seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, SO_SNDTIMEO, 16))
        assert seconds + micros / 1e6 == pytest.approx(settings.TRACELEDGER_BROKER_IO_TIMEOUT)
