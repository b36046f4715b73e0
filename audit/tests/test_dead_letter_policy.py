"""At-least-once dead-lettering (traceledger/broker_policy.py) on the real broker.

Without it RabbitMQ drops a message rejected while ``audit.ingest.dlq`` is missing (a code
review reproduced it). The suite's vhost carries the policy as ``make run``'s does.
"""

import re
import shutil
import subprocess
from urllib.parse import unquote, urlsplit

import pytest
from kombu import Connection, Producer

from audit.tests.ingest_support import queue_depth, wait_until
from traceledger import broker_policy
from traceledger.celery import app
from traceledger.queues import AUDIT_EXCHANGE, DLQ, INGEST_QUEUE, INGEST_QUEUE_NAME

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs a local rabbitmqctl"),
]


def _vhost() -> str:
    return unquote(urlsplit(app.conf.broker_url).path[1:]) or "/"


def _messages_held(queue: str) -> int:
    """Every message the queue holds, ready or not (a dead letter awaiting its target is not
    ready, so a passive declare does not count it)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", _vhost(), "name", "messages"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    counts = dict(line.split("\t") for line in listed.splitlines()[1:] if "\t" in line)
    return int(counts.get(queue, 0))


def test_the_policy_names_the_ingest_queue():
    # broker_policy is standard library only, so it spells the name out: kept equal here.
    assert f"^{re.escape(INGEST_QUEUE_NAME)}$" == broker_policy.QUEUE_PATTERN


def test_a_message_rejected_while_the_dlq_is_missing_is_kept_then_delivered():
    with Connection(app.conf.broker_url) as conn:
        channel = conn.channel()
        INGEST_QUEUE(channel).declare()
        channel.queue_purge(INGEST_QUEUE.name)
        channel.queue_delete(DLQ.name)
        Producer(channel).publish(
            {"poison": True}, exchange=AUDIT_EXCHANGE, routing_key=INGEST_QUEUE.name
        )
        wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 1, what="the message queued")
        INGEST_QUEUE(channel).get(no_ack=False).reject(requeue=False)

        wait_until(lambda: _messages_held(INGEST_QUEUE.name) == 1, what="the dead letter kept")
        DLQ(channel).declare()
        try:
            # RabbitMQ 3.10 forwards it once it looks the route up again: on a policy change.
            broker_policy.policy_apply(_vhost(), priority=1)
            wait_until(lambda: queue_depth(DLQ.name) == 1, what="the dead letter delivered")
        finally:
            broker_policy.policy_apply(_vhost())
        wait_until(lambda: _messages_held(INGEST_QUEUE.name) == 0, what="it settled at the source")
        channel.queue_purge(DLQ.name)
