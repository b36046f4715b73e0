"""A queue deleted under the running stack comes back without a worker restart: the DLQ
above all, without which RabbitMQ drops whatever it dead-letters. Real broker."""

import pytest
from amqp.exceptions import NotFound
from kombu import Connection

from audit.services.dead_letters import dlq_depth
from audit.tasks_outbox import relay_outbox
from audit.tests.ingest_support import make_event, publish, queue_depth, wait_until
from traceledger.celery import app
from traceledger.queues import DLQ, INGEST_QUEUE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_queues")]


def _delete_dlq() -> None:
    with Connection(app.conf.broker_url) as conn:
        conn.default_channel.queue_delete(DLQ.name)
    assert not _dlq_exists()


def _dlq_exists() -> bool:
    with Connection(app.conf.broker_url) as conn:
        try:
            conn.default_channel.queue_declare(queue=DLQ.name, passive=True)
        except NotFound:
            return False
        return True


def _reject_one_ingest_message() -> None:
    """What the worker does to a poison message: RabbitMQ dead-letters it through audit.dlx."""
    with Connection(app.conf.broker_url) as conn:
        message = conn.default_channel.basic_get(INGEST_QUEUE.name, no_ack=False)
        assert message is not None
        conn.default_channel.basic_reject(message.delivery_tag, requeue=False)


def test_the_periodic_relay_declares_a_deleted_dlq_again_and_dead_letters_reach_it(tenant):
    _delete_dlq()

    relay_outbox()

    assert _dlq_exists()
    publish(tenant_id=tenant.pk, events=[make_event()])
    wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 1, what="the message waiting")
    _reject_one_ingest_message()
    wait_until(lambda: queue_depth(DLQ.name) == 1, what="the rejected message in the DLQ")


def test_reading_the_dlq_depth_declares_a_deleted_dlq_instead_of_calling_rabbitmq_away():
    _delete_dlq()

    assert dlq_depth() == 0
    assert _dlq_exists()
