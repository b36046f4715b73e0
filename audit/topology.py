"""Declare the ingest topology of ARCHITECTURE §5 on RabbitMQ, idempotently.

Called by the web publisher when it connects and by the worker at start-up, so no manual
set-up is needed. Declaring an existing exchange or queue with the same arguments is a
no-op; different arguments fail with PRECONDITION_FAILED (notes §1.6), which is why every
caller declares the very objects of ``traceledger/queues.py``.
"""

from dataclasses import dataclass

from kombu import Connection
from kombu.connection import maybe_channel
from kombu.exceptions import OperationalError as BrokerError

from traceledger.queues import AUDIT_EXCHANGE, DLQ, DLX_EXCHANGE, INGEST_QUEUE


def topology_declare(connection) -> None:
    """Declare ``audit`` and ``audit.dlx`` (topic, durable), ``audit.ingest`` (quorum, DLX
    arguments, bound to ``audit``) and ``audit.ingest.dlq`` (bound to ``audit.dlx``).

    ``connection`` is a kombu ``Connection`` (its default channel is used) or an open
    channel (kombu or py-amqp).
    """
    channel = maybe_channel(connection)
    AUDIT_EXCHANGE(channel).declare()
    DLX_EXCHANGE(channel).declare()
    # Queue.declare also declares its exchange and the binding.
    INGEST_QUEUE(channel).declare()
    DLQ(channel).declare()


def broker_connection(url: str, *, name: str, connect_timeout: float, io_timeout: float):
    """A connection of our own for a long-lived thread or process (not Celery's pool): no
    heartbeats to drive, and socket-level bounds so a blackholed broker fails reads and
    writes instead of hanging the caller. Not connected yet."""
    return Connection(
        url,
        connect_timeout=connect_timeout,
        heartbeat=0,
        transport_options={
            "read_timeout": io_timeout,
            "write_timeout": io_timeout,
            "client_properties": {"connection_name": name},
        },
    )


def topology_ensure(url: str, *, timeout: float) -> None:
    """``topology_declare`` on a connection of its own; the periodic outbox relay calls it.

    An exchange or queue deleted while the stack runs (by an operator, a broker reset
    without definitions) came back only when a worker restarted: until then RabbitMQ
    dropped what it dead-lettered to ``audit.dlx``, an exchange with no queue bound. Now
    within one relay period (10 s). Raises kombu's ``OperationalError`` when the broker
    cannot be reached."""
    conn = broker_connection(
        url, name="traceledger-topology", connect_timeout=timeout, io_timeout=timeout
    )
    try:
        conn.ensure_connection(max_retries=0, timeout=timeout)
        topology_declare(conn)
    except conn.connection_errors as exc:
        raise BrokerError(f"declaring the topology: {exc!r}") from exc
    finally:
        conn.release()


@dataclass(frozen=True)
class QueueState:
    messages: int  # ready to deliver (not those a worker holds unacked)
    consumers: int  # channels consuming: one per worker (Celery node) that takes ingest tasks


def queue_state(url: str, queue=INGEST_QUEUE, *, timeout: float, declare=False) -> QueueState:
    """What ``queue`` holds and how many consumers read it, by a passive declare on a
    connection of its own (``declare``: the queue and its binding declared first, so one
    deleted under the running stack comes back instead of reading as a 404). For
    ``audit.ingest`` it is the signal of a stopped worker, which showed nowhere before:
    ``/readyz`` said ok, the lag is only measured when an event is stored, and nothing logs
    while nothing consumes (operator QA). Raises kombu's ``OperationalError`` when the
    broker cannot say."""
    conn = broker_connection(
        url, name="traceledger-queue-state", connect_timeout=timeout, io_timeout=timeout
    )
    try:
        conn.ensure_connection(max_retries=0, timeout=timeout)
        channel = conn.default_channel
        if declare:
            queue(channel).declare()
        _, messages, consumers = channel.queue_declare(queue=queue.name, passive=True)
    except (*conn.connection_errors, *conn.channel_errors) as exc:
        raise BrokerError(f"reading the state of {queue.name}: {exc!r}") from exc
    finally:
        conn.release()
    return QueueState(messages=messages, consumers=consumers)
