"""RabbitMQ topology (ARCHITECTURE §5). Plain kombu objects, importable from settings.

``audit.ingest`` is a quorum queue that dead-letters to ``audit.dlx``. The DLQ
``audit.ingest.dlq`` is deliberately *not* in ``CELERY_QUEUES``: a worker must never consume
it (it would execute the dead tasks). It is declared by ``audit.topology.topology_declare``.

Quorum queues need a topic exchange for Celery's native delayed delivery of retries.
"""

from kombu import Exchange, Queue

AUDIT_EXCHANGE = Exchange("audit", type="topic", durable=True)
DLX_EXCHANGE = Exchange("audit.dlx", type="topic", durable=True)
TASKS_EXCHANGE = Exchange("traceledger", type="topic", durable=True)

# The ingest message: Celery task name and queue (the API publishes, the worker consumes).
INGEST_TASK_NAME = "audit.ingest_batch"
INGEST_QUEUE_NAME = "audit.ingest"
DLQ_NAME = "audit.ingest.dlq"
SEARCH_QUEUE_NAME = "search.index"
MAINTENANCE_QUEUE_NAME = "maintenance"

# Requeues (worker lost, time limit) count towards the delivery limit; Celery retries are new
# messages and are bounded by max_retries instead (notes §1.2).
INGEST_DELIVERY_LIMIT = 10

INGEST_QUEUE = Queue(
    INGEST_QUEUE_NAME,
    AUDIT_EXCHANGE,
    routing_key=INGEST_QUEUE_NAME,
    durable=True,
    queue_arguments={
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DLX_EXCHANGE.name,
        "x-dead-letter-routing-key": DLQ_NAME,
        "x-delivery-limit": INGEST_DELIVERY_LIMIT,
    },
)
DLQ = Queue(
    DLQ_NAME,
    DLX_EXCHANGE,
    routing_key=DLQ_NAME,
    durable=True,
    queue_arguments={"x-queue-type": "quorum"},
)
SEARCH_QUEUE = Queue(
    SEARCH_QUEUE_NAME,
    TASKS_EXCHANGE,
    routing_key=SEARCH_QUEUE_NAME,
    durable=True,
    queue_arguments={"x-queue-type": "quorum"},
)
MAINTENANCE_QUEUE = Queue(
    MAINTENANCE_QUEUE_NAME,
    TASKS_EXCHANGE,
    routing_key=MAINTENANCE_QUEUE_NAME,
    durable=True,
    queue_arguments={"x-queue-type": "quorum"},
)

CELERY_QUEUES = (INGEST_QUEUE, SEARCH_QUEUE, MAINTENANCE_QUEUE)
