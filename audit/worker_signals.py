"""Worker start-up hooks, imported by ``traceledger/celery.py`` (no Django import at module level).

* ``worker_init``: declare the whole RabbitMQ topology, the DLQ included. Celery itself only
  declares ``task_queues``, and the DLQ must stay out of those (a worker would consume and
  execute dead tasks), so without this RabbitMQ would drop dead letters to an unbound DLX.
* ``DeadLetteringConsumer``: Celery acks a message it cannot decode (``on_decode_error``),
  which silently loses it; we reject it without requeue so RabbitMQ dead-letters it.
* Every message of ``audit.ingest`` the worker rejects before a task runs (undecodable, an
  unknown task, a malformed message) counts in ``traceledger_ingest_batches_rejected``, as
  the task's own rejections do: the series operators watch for dead letters.
"""

import logging

from celery import signals
from celery.worker.consumer import Consumer

logger = logging.getLogger(__name__)


def _count_if_ingest(message) -> None:
    from audit import metrics_worker
    from traceledger.queues import INGEST_QUEUE_NAME

    delivery = getattr(message, "delivery_info", None) or {}
    if delivery.get("routing_key") == INGEST_QUEUE_NAME:
        metrics_worker.BATCHES_REJECTED.inc()


@signals.task_rejected.connect
def count_rejected_message(sender=None, message=None, **kwargs) -> None:
    """Celery rejected a message it could not make a task of (unknown format, invalid)."""
    _count_if_ingest(message)


@signals.task_unknown.connect
def count_unknown_task(sender=None, message=None, **kwargs) -> None:
    _count_if_ingest(message)


@signals.worker_init.connect
def declare_topology_on_worker_init(sender=None, **kwargs) -> None:
    from audit.topology import topology_declare
    from traceledger.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=5, interval_start=0.5, interval_max=2)
            topology_declare(connection)
    except Exception:
        # The worker still starts (and retries its own connection); web start-up, drain_dlq
        # and the next worker start declare the DLQ again.
        logger.exception("could not declare the RabbitMQ topology at worker start-up")


class DeadLetteringConsumer(Consumer):
    def on_decode_error(self, message, exc) -> None:
        logger.error(
            "cannot decode message (content type %r): %s; dead-lettering it",
            message.content_type,
            exc,
        )
        message.reject(requeue=False)
        _count_if_ingest(message)
