"""Worker start-up hooks, imported by ``traceledger/celery.py`` (no Django import at module level).

* ``worker_init``: declare the whole RabbitMQ topology, the DLQ included. Celery itself only
  declares ``task_queues``, and the DLQ must stay out of those (a worker would consume and
  execute dead tasks), so without this RabbitMQ would drop dead letters to an unbound DLX.
* ``DeadLetteringConsumer``: Celery acks a message it cannot decode (``on_decode_error``),
  which silently loses it; we reject it without requeue so RabbitMQ dead-letters it.
* ``DeadLetteringConsumer`` also dead-letters a task message whose body is not Celery's
  ``[args, kwargs, embed]``: Celery unpacks it in the consumer, outside any task, and the
  ``ValueError`` stopped the whole worker, again at each restart while the message waited.
* ``celeryd_after_setup``: a worker that signs checkpoints (it consumes ``maintenance``)
  makes the ledger signing key when there is none (and its public file, when it is missing),
  so the ledger API serves the public key and verifies from the worker's start, not from the
  first signing one ``TRACELEDGER_CHECKPOINT_SECONDS`` later (503 until then). Only the
  signer makes it: a web process that made its own would call every checkpoint signed
  elsewhere forged.
* ``task_prerun``: a database connection that failed in an earlier task is checked and
  replaced (Django does this per web request; Celery's fixup only closes connections every
  ``CELERY_DB_REUSE_MAX`` tasks, so a connection cut once failed every later task).
* ``DeadLetteringConsumer`` runs without event heartbeats, mingle and gossip, as if started
  with ``--without-heartbeat --without-mingle --without-gossip``: each publishes from the
  consumer's loop (``worker-heartbeat`` every 2 s, for monitors such as Flower, which this
  service does not ship; mingle's broadcast at start, on the consumer's own connection).
  During a RabbitMQ memory or disk alarm such a publish blocked the loop, so a running
  worker stopped taking messages, the very ones whose draining ends an alarm, and a worker
  started during one never became ready.
* ``DeadLetteringConsumer`` logs its own line, per message, for a message of ``audit.ingest``
  Celery rejects itself (no ``task`` header, a content type it refuses): Celery's lines say
  "deleted" or "discarded", and are throttled, while RabbitMQ dead-letters the message.
* Every message of ``audit.ingest`` the worker rejects before a task runs (undecodable, an
  unknown task, a malformed message) counts in ``traceledger_ingest_batches_rejected``, as
  the task's own rejections do: the series operators watch for dead letters.
"""

import logging

from celery import signals
from celery.worker.consumer import Consumer
from vine import promise

logger = logging.getLogger(__name__)


def _is_ingest(message) -> bool:
    from traceledger.queues import INGEST_QUEUE_NAME

    delivery = getattr(message, "delivery_info", None) or {}
    return delivery.get("routing_key") == INGEST_QUEUE_NAME


def _count_if_ingest(message) -> None:
    from audit import metrics_worker

    if _is_ingest(message):
        metrics_worker.BATCHES_REJECTED.inc()


def _log_dead_lettered(message, problem: str) -> None:
    """Our line for a message Celery itself rejected before any task, on ``audit.ingest``
    (whose rejects RabbitMQ dead-letters; the other queues have no DLX)."""
    if not _is_ingest(message):
        return
    headers = message.headers if isinstance(message.headers, dict) else {}
    given = headers.get("id") or (message.properties or {}).get("message_id")
    logger.error(
        "%s (message %s, content type %r); dead-lettering it to audit.ingest.dlq",
        problem,
        given or "without an id",
        message.content_type,
    )


def _note_dead_lettered(message, problem: str) -> None:
    """Leave the drain the reason, under the id it will store the message by: without a
    note it could only say "rejected by the worker" (best effort, as every note)."""
    if not _is_ingest(message):
        return
    from audit.services.dead_letters import dead_letter_note
    from audit.services.dead_letters.messages import dead_letter_message_id

    try:
        dead_letter_note(task_id=dead_letter_message_id(message), reason=problem)
    except Exception:  # the reject itself must happen whatever the note does
        logger.warning("cannot leave a dead-letter note for a rejected message", exc_info=True)


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


@signals.celeryd_after_setup.connect
def signing_key_on_worker_setup(sender=None, instance=None, **kwargs) -> None:
    from audit.ledger.signing import SigningKeyMissing, signing_key
    from traceledger.queues import MAINTENANCE_QUEUE_NAME

    if instance is None or MAINTENANCE_QUEUE_NAME not in instance.app.amqp.queues.consume_from:
        return
    try:
        signing_key(create=True)
    except SigningKeyMissing as exc:
        # Given the public key alone: this worker cannot sign, and each signing says so.
        logger.error("no ledger signing key at worker start-up: %s", exc)
    except Exception:
        # The worker still starts; the first signing tries again and says why in its task.
        logger.exception("could not make the ledger signing key at worker start-up")


@signals.task_prerun.connect
def replace_failed_database_connections(sender=None, **kwargs) -> None:
    """Django's ``close_old_connections`` at each task, as at each web request: a connection
    that saw an error is closed unless it still answers (the next query reconnects), one
    past ``CONN_MAX_AGE`` is closed, and the first query of the task health-checks the rest
    (``CONN_HEALTH_CHECKS``), so a connection that died idle does not fail the task."""
    from django.db import close_old_connections

    # As Celery's own fixup: an eager task runs inside its caller's connection (a test's
    # transaction, say), which is not the task's to close.
    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()


def body_problem(message) -> str | None:
    """Why a task message's body is not ``[args, kwargs, embed]`` as Celery's protocol 2
    needs, or None (also for what Celery checks itself: protocol 1, undecodable bodies)."""
    headers = message.headers
    if not isinstance(headers, dict) or "task" not in headers:
        return None
    try:
        body = message.payload
    except Exception:  # Celery's own decode answers it (on_decode_error below)
        return None
    if isinstance(body, dict) and "args" in body:
        return None  # a hybrid protocol 1 body, which Celery converts
    if not isinstance(body, list | tuple) or len(body) != 3:
        return f"body is a {type(body).__name__}, not Celery's [args, kwargs, embed]"
    args, kwargs, embed = body
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return "body is not Celery's [args, kwargs, embed]: args must be a list, kwargs an object"
    if embed is not None and not isinstance(embed, dict):
        return "body is not Celery's [args, kwargs, embed]: embed must be an object"
    return None


# Whatever the command line says: the consumer's loop publishes nothing of its own.
QUIET_CONSUMER = {"without_heartbeat": True, "without_mingle": True, "without_gossip": True}


class DeadLetteringConsumer(Consumer):
    def __init__(self, *args, worker_options=None, **kwargs):
        options = {**(worker_options or {}), **QUIET_CONSUMER}
        super().__init__(*args, worker_options=options, **kwargs)

    def create_task_handler(self, promise=promise):
        on_task_received = super().create_task_handler(promise)

        def on_task_received_checked(message):
            problem = body_problem(message)
            if problem is None:
                return on_task_received(message)
            self._dead_letter_malformed(message, problem)
            return None

        return on_task_received_checked

    def _dead_letter_malformed(self, message, problem: str) -> None:
        from audit.services.dead_letters import dead_letter_note
        from audit.services.dead_letters.messages import dead_letter_message_id

        task_id = str(message.headers.get("id") or "")
        logger.error("malformed task message %s: %s; dead-lettering it", task_id, problem)
        # Under the id the drain stores the letter by (a digest of the body without an id).
        dead_letter_note(
            task_id=dead_letter_message_id(message),
            reason="malformed task message",
            exception=problem,
        )
        message.reject(requeue=False)
        _count_if_ingest(message)

    # Celery's own lines for these say "Received and deleted unknown message. Wrong
    # destination?!?" (WARNING) and "Received invalid task message … ignored and discarded"
    # (ERROR), and the consumer's logger is throttled (one line of a kind per 30 s, for its
    # reconnect lines): on audit.ingest the message is rejected, so RabbitMQ dead-letters
    # it, and nothing said so. Celery's handling is kept; our line follows, per message.
    def on_unknown_message(self, body, message) -> None:
        from audit.services.dead_letters.messages import NO_TASK_HEADER

        problem = NO_TASK_HEADER
        _note_dead_lettered(message, problem)  # before Celery's reject: the drain may be quick
        super().on_unknown_message(body, message)
        _log_dead_lettered(message, problem)

    def on_invalid_task(self, body, message, exc) -> None:
        problem = f"invalid task message: {exc}"
        _note_dead_lettered(message, problem)
        super().on_invalid_task(body, message, exc)
        _log_dead_lettered(message, problem)

    def on_decode_error(self, message, exc) -> None:
        logger.error(
            "cannot decode message (content type %r): %s; dead-lettering it",
            message.content_type,
            exc,
        )
        message.reject(requeue=False)
        _count_if_ingest(message)
