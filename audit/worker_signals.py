"""Worker start-up hooks, imported by ``traceledger/celery.py`` (no Django import at module level).

* ``worker_init``: declare the whole RabbitMQ topology, the DLQ included. Celery itself only
  declares ``task_queues``, and the DLQ must stay out of those (a worker would consume and
  execute dead tasks), so without this RabbitMQ would drop dead letters to an unbound DLX.
* ``DeadLetteringConsumer``: Celery acks a message it cannot decode (``on_decode_error``),
  which silently loses it; we reject it without requeue so RabbitMQ dead-letters it.
"""

import logging

from celery import signals
from celery.worker.consumer import Consumer

logger = logging.getLogger(__name__)


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
