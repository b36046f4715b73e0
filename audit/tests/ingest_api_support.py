"""Helpers of the ingest API, publisher and outbox tests: valid events, the broker's queue."""

import importlib
import os
import time
from datetime import UTC, datetime, timedelta

import orjson
from kombu import Connection

from audit.topology import topology_declare
from traceledger.queues import INGEST_QUEUE, INGEST_QUEUE_NAME

URL = "/api/v1/audit-events"


def valid_event(**overrides) -> dict:
    event = {
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        "action": "invoice.update",
        "actor": {"id": "user-42"},
    }
    event.update(overrides)
    return event


def post_json(client, body, **extra):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.generic("POST", URL, data, content_type="application/json", **extra)


def real_broker_url() -> str:
    """The broker URL of the settings module, whatever a test's ``settings`` override says
    (the publisher may be pointed at a fault proxy; the test's own checks never are)."""
    return importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"]).CELERY_BROKER_URL


def broker_url_via(port: int) -> str:
    """The test broker URL with its host and port replaced (to go through a fault proxy)."""
    url = Connection(real_broker_url())
    vhost = url.virtual_host or "/"
    return f"amqp://{url.userid}:{url.password}@127.0.0.1:{port}/{vhost.lstrip('/') or '%2F'}"


def broker_port() -> int:
    return Connection(real_broker_url()).port or 5672


def purge_ingest_queue() -> None:
    with Connection(real_broker_url()) as conn:
        topology_declare(conn)
        conn.default_channel.queue_purge(INGEST_QUEUE_NAME)


def ingest_messages(*, expect: int, timeout: float = 10.0) -> list[dict]:
    """Take (and ack) at least ``expect`` messages from ``audit.ingest``, as decoded Celery
    protocol 2 messages: ``{"headers", "properties", "kwargs"}``."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    with Connection(real_broker_url()) as conn:
        queue = INGEST_QUEUE(conn.default_channel)
        while len(messages) < expect and time.monotonic() < deadline:
            message = queue.get(no_ack=False, accept=["json"])
            if message is None:
                time.sleep(0.05)
                continue
            args, kwargs, embed = orjson.loads(message.body)
            messages.append(
                {
                    "headers": message.headers,
                    "properties": message.properties,
                    "content_type": message.content_type,
                    "args": args,
                    "kwargs": kwargs,
                    "embed": embed,
                }
            )
            message.ack()
    return messages
